"""API keys and Google identities bound to scopes (issue 20): a caller outside its scopes gets
403 on plan, drafts and runs, and nothing is claimed, read or written for it."""

from __future__ import annotations

import hmac
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from service.adapters.ledger_sql import draft_ledger, runs
from service.api import auth
from service.api.app import create_app
from service.bootstrap import Services, build_services
from service.config import PROJECT_ROOT, ConfigError, Settings, settings_from_env
from service.logging_setup import JsonFormatter
from service.ports import DraftKey
from tests.conftest import FIXED_NOW, invoice_row
from tests.emulators.server import serve_wsgi
from tests.unit.test_google_identity import CLIENT_ID, CertsServer, SigningKey, claims, make_key

pytestmark = pytest.mark.timeout(60)

SHEET_A, SHEET_B, SHEET_C = "1AbcSheetIdOfClientA", "2DefSheetIdOfClientB", "3GhiSheetIdOfC"
OPEN_KEY = "open-key-0123456789"  # no binding: every scope
B_KEY = "b-key-0123456789"  # bound to sheet B only
RUN_KEY = "run-key-0123456789"  # bound to the server's own sheet (a file here)
BODY = {"today": "2025-01-22", "invoices": [invoice_row()]}  # INV-1 is due its stage 7


@pytest.fixture
def invoices(tmp_path: Path) -> Path:
    """The server's configured sheet: a local file, whose scope is ``file:<name>``."""
    path = tmp_path / "invoices.csv"
    shutil.copyfile(PROJECT_ROOT / "examples" / "invoices.csv", path)
    return path


@pytest.fixture
def make_app(make_settings: Callable[..., Settings], invoices: Path) -> Callable[..., Flask]:
    def build(**env: str) -> Flask:
        env.setdefault("INVOICES_FILE", str(invoices))
        services = build_services(make_settings(**env), clock=lambda: FIXED_NOW)
        return create_app(services=services)

    return build


@pytest.fixture
def app(make_app: Callable[..., Flask], invoices: Path) -> Flask:
    return make_app(API_KEYS=f"{OPEN_KEY},{B_KEY}:{SHEET_B},{RUN_KEY}:file:{invoices.name}")


def services_of(app: Flask) -> Services:
    services: Services = app.extensions["invoice_collector"]
    return services


def ledger_rows(app: Flask) -> list[tuple[str, str, int]]:
    """Every (scope, invoice id, stage) in the app's ledger."""
    engine = services_of(app).ledger.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        query = sa.select(draft_ledger.c.scope, draft_ledger.c.invoice_id, draft_ledger.c.stage)
        return [tuple(row) for row in conn.execute(query)]


def run_count(app: Flask) -> int:
    engine = services_of(app).runs.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(runs)).scalar_one())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post(client: FlaskClient, path: str, token: str, **body: Any) -> TestResponse:
    return client.post(path, json=body, headers=bearer(token))


def assert_scope_forbidden(response: TestResponse) -> dict[str, Any]:
    assert response.status_code == 403, response.get_json()
    error: dict[str, Any] = response.get_json()["error"]
    assert error["code"] == "scope_forbidden"
    assert error["message"]
    assert "rows" not in response.get_json()
    return error


def wait_done(client: FlaskClient, url: str, token: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        body: dict[str, Any] = client.get(url, headers=bearer(token)).get_json()
        if body.get("state") in ("done", "failed"):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


# --- API keys --------------------------------------------------------------------------------


def test_a_key_bound_to_sheet_b_is_refused_on_sheet_a_and_claims_nothing(app: Flask) -> None:
    client = app.test_client()

    plan = post(client, "/v1/plan", B_KEY, scope=SHEET_A, **BODY)
    drafts = post(client, "/v1/drafts", B_KEY, scope=SHEET_A, **BODY)

    assert assert_scope_forbidden(plan)["details"] == {"scope": SHEET_A}
    assert SHEET_A in assert_scope_forbidden(drafts)["message"]
    assert ledger_rows(app) == []
    assert services_of(app).ledger.get(DraftKey(SHEET_A, "INV-1", 7)) is None
    assert not (services_of(app).settings.maildir_path / "new").exists()


def test_a_key_bound_to_sheet_b_drafts_on_sheet_b(app: Flask) -> None:
    response = post(app.test_client(), "/v1/drafts", B_KEY, scope=SHEET_B, **BODY)

    assert response.status_code == 200, response.get_json()
    assert response.get_json()["rows"][0]["reason"] == "drafted"
    assert ledger_rows(app) == [(SHEET_B, "INV-1", 7)]


def test_a_bound_key_must_name_its_scope(app: Flask) -> None:
    # Without a scope a request falls into the shared "default" one, open to every unbound key.
    error = assert_scope_forbidden(post(app.test_client(), "/v1/drafts", B_KEY, **BODY))

    assert "send `scope`" in error["message"]
    assert ledger_rows(app) == []


def test_a_bound_key_cannot_start_a_run_on_another_sheet(app: Flask, invoices: Path) -> None:
    before = invoices.read_bytes()

    response = post(app.test_client(), "/v1/runs", B_KEY, today="2026-11-24", dry_run=False)

    assert "run the server's sheet" in assert_scope_forbidden(response)["message"]
    assert str(invoices) not in response.get_data(as_text=True)
    assert run_count(app) == 0
    assert ledger_rows(app) == []
    assert invoices.read_bytes() == before  # nothing written back


def test_an_unbound_key_works_on_every_scope(app: Flask) -> None:
    client = app.test_client()

    for scope in (SHEET_A, SHEET_B):
        assert post(client, "/v1/plan", OPEN_KEY, scope=scope, **BODY).status_code == 200
        assert post(client, "/v1/drafts", OPEN_KEY, scope=scope, **BODY).status_code == 200
    assert post(client, "/v1/drafts", OPEN_KEY, **BODY).status_code == 200  # "default"
    started = post(client, "/v1/runs", OPEN_KEY, today="2026-11-24")
    assert started.status_code == 202, started.get_json()

    assert wait_done(client, started.get_json()["status_url"], OPEN_KEY)["state"] == "done"
    assert {row[0] for row in ledger_rows(app)} == {SHEET_A, SHEET_B, "default"}


def test_a_key_bound_to_the_servers_sheet_may_run_it(app: Flask) -> None:
    client = app.test_client()
    started = post(client, "/v1/runs", RUN_KEY, today="2026-11-24")

    assert started.status_code == 202, started.get_json()
    assert wait_done(client, started.get_json()["status_url"], RUN_KEY)["state"] == "done"


def test_a_bound_key_cannot_read_another_scopes_run(app: Flask, invoices: Path) -> None:
    client = app.test_client()
    started = post(client, "/v1/runs", OPEN_KEY, today="2026-11-24")
    url = started.get_json()["status_url"]
    wait_done(client, url, OPEN_KEY)

    refused = client.get(url, headers=bearer(B_KEY))

    assert "another sheet" in assert_scope_forbidden(refused)["message"]
    assert "results" not in refused.get_json()
    assert str(invoices) not in refused.get_data(as_text=True)  # another sheet's id stays unsaid
    assert client.get(url, headers=bearer(RUN_KEY)).status_code == 200


def test_every_key_is_compared_whatever_the_token(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[bytes] = []
    compare_digest = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return compare_digest(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)  # auth calls it through the module
    client = app.test_client()
    for token in (OPEN_KEY, B_KEY, "no-such-key"):
        compared.clear()
        client.get("/v1/templates", headers=bearer(token))
        # The key part alone, each key once: never the binding, never a short cut.
        assert compared == [OPEN_KEY.encode(), B_KEY.encode(), RUN_KEY.encode()], token


def test_bound_scopes_are_logged_only_as_fingerprints(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="service.api.auth")
    app = make_app(API_KEYS=f"{B_KEY}:{SHEET_B}|{SHEET_C}")
    post(app.test_client(), "/v1/plan", B_KEY, scope=SHEET_A, **BODY)

    formatter = JsonFormatter([B_KEY])
    lines = [formatter.format(record) for record in caplog.records]
    messages = [json.loads(line)["msg"] for line in lines]
    assert "scope bindings" in messages and "scope refused" in messages
    assert auth.fingerprint("scope", SHEET_B) in "".join(lines)
    for line in lines:
        assert all(secret not in line for secret in (SHEET_A, SHEET_B, SHEET_C, B_KEY)), line


# --- Configuration ---------------------------------------------------------------------------


def test_keys_with_a_binding_parse_into_the_key_and_its_scopes() -> None:
    settings = settings_from_env(
        {"API_KEYS": f"keyA, keyB:{SHEET_A}| {SHEET_B} ,keyC:file:invoices.csv"}
    )

    assert settings.api_keys == ("keyA", "keyB", "keyC")
    assert settings.api_key_scopes == {
        "keyB": frozenset({SHEET_A, SHEET_B}),
        "keyC": frozenset({"file:invoices.csv"}),
    }


def test_identities_with_a_binding_keep_the_scopes_case() -> None:
    settings = settings_from_env(
        {"ALLOWED_GOOGLE_IDENTITIES": f"@Firm.example:{SHEET_A},ana@client.example:{SHEET_B}"}
    )

    assert settings.allowed_google_identities == ("@firm.example", "ana@client.example")
    assert settings.google_identity_scopes == {
        "@firm.example": frozenset({SHEET_A}),
        "ana@client.example": frozenset({SHEET_B}),
    }


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("secret-key-0123:", id="no-scope"),
        pytest.param(f":{SHEET_A}", id="no-key"),
        pytest.param(f"secret-key-0123:{SHEET_A}||{SHEET_B}", id="empty-scope"),
        pytest.param(f"secret-key-0123:{SHEET_A}|", id="trailing-bar"),
        pytest.param(f"secret-key-0123,secret-key-0123:{SHEET_A}", id="bound-and-unbound"),
    ],
)
def test_a_malformed_binding_is_a_config_error_naming_api_keys(value: str) -> None:
    with pytest.raises(ConfigError) as refused:
        settings_from_env({"API_KEYS": value})

    assert str(refused.value).startswith("API_KEYS: entry ")
    assert "secret-key" not in str(refused.value)  # the key is never quoted back


@pytest.mark.parametrize("value", ["firm.example:1Abc", "@firm.example:", "ana@x.example:a||b"])
def test_a_malformed_identity_binding_is_a_config_error(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^ALLOWED_GOOGLE_IDENTITIES: "):
        settings_from_env({"ALLOWED_GOOGLE_IDENTITIES": value})


# --- Google identities -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def google_key() -> SigningKey:
    return make_key("kid-bindings")


@pytest.fixture
def certs_url(google_key: SigningKey) -> Iterator[str]:
    server = CertsServer(keys=[google_key], published=[google_key])
    with serve_wsgi(server.app) as base_url:
        yield base_url + "oauth2/v1/certs"


@pytest.fixture
def google_app(make_app: Callable[..., Flask], certs_url: str) -> Flask:
    return make_app(
        GOOGLE_CLIENT_ID=CLIENT_ID,
        GOOGLE_CERTS_URL=certs_url,
        # The address's own entry wins over its domain's: the boss may use every scope.
        ALLOWED_GOOGLE_IDENTITIES=f"@firm.example:{SHEET_B},boss@firm.example",
    )


def id_token(key: SigningKey, email: str) -> str:
    return key.sign(claims(email=email))


def test_an_identity_bound_by_domain_is_refused_on_sheet_a_and_claims_nothing(
    google_app: Flask, google_key: SigningKey
) -> None:
    client, ana = google_app.test_client(), id_token(google_key, "ana@firm.example")

    plan = post(client, "/v1/plan", ana, scope=SHEET_A, **BODY)
    drafts = post(client, "/v1/drafts", ana, scope=SHEET_A, **BODY)
    run = post(client, "/v1/runs", ana, today="2026-11-24", dry_run=False)

    for response in (plan, drafts, run):
        assert "Google account" in assert_scope_forbidden(response)["message"]
    assert ledger_rows(google_app) == []
    assert run_count(google_app) == 0
    ok = post(client, "/v1/drafts", ana, scope=SHEET_B, **BODY)
    assert ok.status_code == 200, ok.get_json()
    assert ledger_rows(google_app) == [(SHEET_B, "INV-1", 7)]


def test_an_identity_listed_without_a_binding_works_on_every_scope(
    google_app: Flask, google_key: SigningKey
) -> None:
    client, boss = google_app.test_client(), id_token(google_key, "Boss@Firm.example")

    for scope in (SHEET_A, SHEET_B):
        assert post(client, "/v1/plan", boss, scope=scope, **BODY).status_code == 200
        assert post(client, "/v1/drafts", boss, scope=scope, **BODY).status_code == 200
    started = post(client, "/v1/runs", boss, today="2026-11-24")
    assert started.status_code == 202, started.get_json()
    wait_done(client, started.get_json()["status_url"], boss)

    assert sorted(row[0] for row in ledger_rows(google_app)) == [SHEET_A, SHEET_B]
    ana = id_token(google_key, "ana@firm.example")
    assert_scope_forbidden(client.get(started.get_json()["status_url"], headers=bearer(ana)))
