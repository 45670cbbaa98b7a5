"""Shared fixtures: a fresh app per test (flaskr style), settings built from a dict."""

from __future__ import annotations

import datetime as dt
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from service.adapters.ledger_sql import make_engine, normalize_url
from service.api.app import create_app
from service.bootstrap import build_services
from service.config import PROJECT_ROOT, Settings, settings_from_env

API_KEY = "test-key-0123456789"
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
FIXED_NOW = dt.datetime(2026, 11, 24, 9, 30, tzinfo=dt.UTC)
IN_CI = os.environ.get("CI", "").lower() == "true"
PG_ENV = "TEST_DATABASE_URL"


def missing_part(why: str) -> None:
    """Skip loudly because a part the test needs is missing; under CI=true, fail instead."""
    if IN_CI:
        pytest.fail(f"CI=true and {why}", pytrace=False)
    pytest.skip(f"SKIPPED: {why}")


def require_shared_data(path: Path) -> None:
    """The shared data file ``path``, or a loud skip (a failure under CI=true)."""
    if not path.exists():
        missing_part(f"the shared data file {path} is not on this machine")


def require_postgres() -> str:
    """TEST_DATABASE_URL, or a loud skip (a failure under CI=true) when it is not set."""
    url = os.environ.get(PG_ENV, "").strip()
    if not url:
        missing_part(
            f"PostgreSQL NOT TESTED: {PG_ENV} is not set "
            "(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test; .ci/run sets it)"
        )
    return url


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked ``postgres`` needs TEST_DATABASE_URL: skip loudly, or fail under CI=true."""
    if item.get_closest_marker("postgres") is not None:
        require_postgres()


@pytest.fixture
def pg_url() -> str:
    """The shared test PostgreSQL (TEST_DATABASE_URL); tests on it must use unique scopes."""
    return require_postgres()


@pytest.fixture
def pg_schema_url(pg_url: str) -> Iterator[str]:
    """A URL whose tables all land in a fresh PostgreSQL schema, dropped after the test."""
    schema = f"ic_test_{uuid.uuid4().hex[:12]}"
    admin = make_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    # search_path in the connection options puts every table (and alembic_version) in the
    # test's own schema without the code under test knowing about schemas.
    url = normalize_url(pg_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings for a test: embedded default in tmp_path, plus any overrides (env names)."""

    def build(**env: str) -> Settings:
        base = {
            "API_KEYS": API_KEY,
            "MAILDIR_PATH": str(tmp_path / "Maildir"),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
            "SENDS_LOG": str(tmp_path / "logs" / "sends.csv"),
        }
        base.update(env)
        return settings_from_env(base)

    return build


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def app(settings: Settings) -> Flask:
    services = build_services(settings, clock=lambda: FIXED_NOW)
    return create_app(services=services)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"}


def invoice_row(**overrides: Any) -> dict[str, Any]:
    """A valid sheet row; override any cell."""
    row: dict[str, Any] = {
        "invoice_id": "INV-1",
        "client_name": "Ann Client",
        "client_email": "ann@client.example.com",
        "amount": "1250.00",
        "currency": "USD",
        "due_date": "2025-01-15",
        "status": "Overdue",
    }
    row.update(overrides)
    return row


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The CLI configures the root logger; put it back so later tests log as before."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
    root.setLevel(level)
