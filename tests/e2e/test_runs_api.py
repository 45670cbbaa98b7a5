"""POST /v1/runs then GET /v1/runs/{id} until done, through the Flask app (any instance answers)."""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.api.app import create_app
from service.bootstrap import Services, build_services
from service.config import PROJECT_ROOT, Settings
from service.ports import RunState
from tests.conftest import FIXED_NOW

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def invoices(tmp_path: Path) -> Path:
    path = tmp_path / "invoices.csv"
    shutil.copyfile(PROJECT_ROOT / "examples" / "invoices.csv", path)
    return path


@pytest.fixture
def make_app(make_settings: Callable[..., Settings], invoices: Path) -> Callable[..., Flask]:
    def build(now: dt.datetime = FIXED_NOW, **env: str) -> Flask:
        env.setdefault("INVOICES_FILE", str(invoices))
        services = build_services(make_settings(**env), clock=lambda: now)
        return create_app(services=services)

    return build


@pytest.fixture
def client(make_app: Callable[..., Flask]) -> FlaskClient:
    return make_app().test_client()


def wait_done(client: FlaskClient, url: str, auth: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        response = client.get(url, headers=auth)
        assert response.status_code == 200, response.json
        body: dict[str, Any] = response.json  # type: ignore[assignment]
        if body["state"] in ("done", "failed"):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def test_a_run_is_accepted_then_reports_progress_summary_and_results(
    client: FlaskClient, auth: dict[str, str], invoices: Path, tmp_path: Path
) -> None:
    response = client.post("/v1/runs", json={"today": "2026-11-24", "dry_run": False}, headers=auth)

    assert response.status_code == 202, response.json
    accepted = response.json
    assert accepted is not None
    assert accepted["status_url"] == f"/v1/runs/{accepted['id']}"
    assert response.headers["Location"] == accepted["status_url"]

    run = wait_done(client, accepted["status_url"], auth)
    assert run["state"] == "done", run["error"]
    assert run["scope"].startswith("file:") and run["scope"].endswith(invoices.name)
    assert run["progress"] == {"done": 11, "total": 11}
    assert run["summary"]["drafted"] == 11
    assert run["summary"]["written"] == 11
    assert run["summary"]["dry_run"] is False
    assert len(run["results"]) == 24
    assert all("body" not in row for row in run["results"])
    drafted = {r["invoice_id"]: r for r in run["results"] if r["reason"] == "drafted"}
    assert drafted["INV-1004"]["writeback"]["last_stage_sent"] == 28
    assert len(list((tmp_path / "Maildir" / "new").glob("*.eml"))) == 11
    assert "Drafted stage 28 reminder" in invoices.read_text()


def test_another_instance_on_the_same_database_answers_for_the_run(
    make_app: Callable[..., Flask], auth: dict[str, str]
) -> None:
    first = make_app().test_client()
    accepted = first.post("/v1/runs", json={"today": "2026-11-24"}, headers=auth).json
    assert accepted is not None
    wait_done(first, accepted["status_url"], auth)

    other = make_app().test_client()  # a second worker or host: nothing shared but the DB
    run = other.get(accepted["status_url"], headers=auth)

    assert run.status_code == 200
    assert run.json is not None and run.json["state"] == "done"


def test_a_run_without_a_body_is_a_dry_run_by_default(
    client: FlaskClient, auth: dict[str, str], invoices: Path, tmp_path: Path
) -> None:
    before = invoices.read_bytes()
    response = client.post("/v1/runs", headers=auth)

    assert response.status_code == 202, response.json
    assert response.json is not None
    run = wait_done(client, response.json["status_url"], auth)
    assert run["summary"]["dry_run"] is True
    assert run["summary"]["draft"] > 0
    assert invoices.read_bytes() == before
    assert not (tmp_path / "Maildir").exists()


def test_outside_the_window_a_run_is_refused_unless_forced(
    make_app: Callable[..., Flask], auth: dict[str, str]
) -> None:
    client = make_app(WINDOW_START="14", WINDOW_END="18").test_client()  # it is 09:30 UTC

    refused = client.post("/v1/runs", json={}, headers=auth)
    assert refused.status_code == 409
    assert refused.json is not None
    assert refused.json["error"]["code"] == "outside_window"

    forced = client.post("/v1/runs", json={"force": True}, headers=auth)
    assert forced.status_code == 202


def test_an_unknown_run_is_a_404_in_the_error_shape(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    for run_id in ("0b6f3c5e-7d0a-4c1e-9d5b-3f2a1e0c9b8a", "not-a-uuid"):
        response = client.get(f"/v1/runs/{run_id}", headers=auth)
        assert response.status_code == 404
        assert response.json is not None
        assert response.json["error"]["code"] == "run_not_found"


def test_runs_need_an_api_key(client: FlaskClient) -> None:
    assert client.post("/v1/runs").status_code == 401
    assert client.get("/v1/runs/x").status_code == 401


def test_an_unknown_field_in_the_body_is_a_422(client: FlaskClient, auth: dict[str, str]) -> None:
    response = client.post("/v1/runs", json={"dryrun": False}, headers=auth)
    assert response.status_code == 422
    assert response.json is not None
    assert "dryrun" in str(response.json["error"]["details"])


def test_the_openapi_document_describes_both_run_routes(client: FlaskClient) -> None:
    spec = client.get("/openapi.json").json
    assert spec is not None
    assert "202" in spec["paths"]["/v1/runs"]["post"]["responses"]
    assert "404" in spec["paths"]["/v1/runs/{run_id}"]["get"]["responses"]
    assert spec["paths"]["/v1/runs"]["post"]["requestBody"]["required"] is False
    assert {"RunRequest", "RunAccepted", "Run"} <= set(spec["components"]["schemas"])


def test_a_run_whose_worker_died_is_interrupted_after_its_lease_and_another_instance_runs(
    make_settings: Callable[..., Settings], invoices: Path, auth: dict[str, str]
) -> None:
    now = [FIXED_NOW]
    settings = make_settings(INVOICES_FILE=str(invoices), RUN_LEASE_SECONDS="60")

    def instance() -> tuple[FlaskClient, Services]:
        services = build_services(settings, clock=lambda: now[0])
        return create_app(services=services).test_client(), services

    first, services = instance()
    # A worker accepted a run and started it, then was killed: nothing will ever finish it.
    dead = services.runs.create_run(services.source().scope, now=now[0])  # type: ignore[attr-defined]
    services.runs.update_run(dead.id, now=now[0], state=RunState.RUNNING)

    busy = first.post("/v1/runs", json={}, headers=auth)
    assert busy.status_code == 409, busy.json
    assert busy.json is not None and busy.json["error"]["code"] == "run_in_progress"
    assert busy.json["error"]["details"] == {"id": dead.id}

    now[0] += dt.timedelta(seconds=61)
    other, _ = instance()  # another host: nothing shared but the database
    accepted = other.post("/v1/runs", json={"today": "2026-11-24"}, headers=auth)
    assert accepted.status_code == 202, accepted.json
    assert accepted.json is not None
    assert wait_done(other, accepted.json["status_url"], auth)["state"] == "done"

    gone = first.get(f"/v1/runs/{dead.id}", headers=auth).json
    assert gone is not None
    assert gone["state"] == "failed"
    assert gone["error"].startswith("interrupted")
    assert gone["finished_at"] is not None
