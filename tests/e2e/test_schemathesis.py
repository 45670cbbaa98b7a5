"""Schemathesis against the app's own /openapi.json: no 5xx, every response as documented.

Runs in-process through WSGI (no sockets, so it stays fast and needs no free port), with a
valid API key, against the embedded default in a temp dir (Maildir drafts, SQLite ledger,
a copy of the example sheet for headless runs). Bounded to MAX_EXAMPLES per operation;
for a deeper, random hunt: ``FUZZ_EXAMPLES=1000 FUZZ_RANDOM=1 pytest tests/e2e/…``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.api.app import create_app
from service.bootstrap import build_services
from service.config import PROJECT_ROOT, Settings
from tests.conftest import API_KEY, FIXED_NOW

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]

MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def fuzzed_app(make_settings: Callable[..., Settings], tmp_path: Path) -> Flask:
    sheet = tmp_path / "invoices.csv"
    shutil.copy(PROJECT_ROOT / "examples" / "invoices.csv", sheet)
    settings = make_settings(INVOICES_FILE=str(sheet), MAX_ROWS_PER_REQUEST="500")
    return create_app(services=build_services(settings, clock=lambda: FIXED_NOW))


@pytest.fixture
def api_schema(fuzzed_app: Flask) -> schemathesis.BaseSchema:
    loaded = schemathesis.openapi.from_wsgi("/openapi.json", fuzzed_app)
    # Valid and invalid inputs: bad input must be a 4xx in our error shape, never a 500.
    loaded.config.generation.update(modes=list(schemathesis.GenerationMode))
    return loaded


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
# derandomize: `make test` explores the same inputs every run, so a failure reproduces.
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("FUZZ_RANDOM") is None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_openapi_document(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
    case.call_and_validate(headers={"Authorization": f"Bearer {API_KEY}"}, checks=CHECKS)
