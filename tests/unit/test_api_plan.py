"""The plan API through Flask's test client: auth, validation, error shape, row isolation."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from service.api import services
from service.api.app import create_app
from service.api.schemas import PlanResponseSchema, RowResultSchema
from service.bootstrap import build_services
from service.config import PROJECT_ROOT, Settings
from tests.conftest import invoice_row


def post_plan(client: FlaskClient, auth: dict[str, str], **body: object):  # type: ignore[no-untyped-def]
    return client.post("/v1/plan", json=body, headers=auth)


def test_healthz_needs_no_key(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_v1_routes_need_a_valid_key(client: FlaskClient) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
        r = client.post("/v1/plan", json={"invoices": []}, headers=headers)
        assert r.status_code == 401
        assert r.get_json()["error"]["code"] == "unauthorized"
        assert "WWW-Authenticate" in r.headers
    assert client.get("/v1/templates").status_code == 401


def test_seed_examples_through_the_api(client: FlaskClient, auth: dict[str, str]) -> None:
    r = post_plan(
        client,
        auth,
        today="2025-01-22",
        invoices=[
            invoice_row(invoice_id="A", due_date="2025-01-15"),
            invoice_row(invoice_id="B", due_date="2025-01-01"),
        ],
    )
    assert r.status_code == 200
    rows = r.get_json()["rows"]
    assert [(x["invoice_id"], x["stage"], x["action"]) for x in rows] == [
        ("A", 7, "draft"),
        ("B", 21, "draft"),
    ]
    assert rows[0]["subject"] and "Ann Client" in rows[0]["body"]


def test_bad_row_is_an_error_row_and_the_others_go_on(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    r = post_plan(
        client,
        auth,
        today="2025-01-22",
        invoices=[
            invoice_row(invoice_id="OK-1"),
            {"invoice_id": "BAD", "amount": "lots", "due_date": "soon", "row": 9},
            invoice_row(invoice_id="OK-2"),
            {"weird": ["nested", {"x": 1}], "amount": {"a": 1}, "due_date": [1]},
        ],
    )
    assert r.status_code == 200
    rows = r.get_json()["rows"]
    assert [x["action"] for x in rows] == ["draft", "error", "draft", "error"]
    assert rows[1]["row"] == 9 and set(rows[1]["errors"]) >= {"amount", "due_date", "client_email"}
    assert "amount" in rows[1]["message"]


def test_duplicate_invoice_ids_are_errors_on_every_copy(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    rows = post_plan(
        client,
        auth,
        today="2025-01-22",
        invoices=[invoice_row(), invoice_row(), invoice_row(invoice_id="X")],
    ).get_json()["rows"]
    assert [x["reason"] for x in rows] == ["duplicate_invoice_id", "duplicate_invoice_id", "due"]


def test_today_defaults_to_the_requested_timezone_not_the_servers_clock(
    settings: Settings, auth: dict[str, str]
) -> None:
    noon_utc = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)  # 01:00 on the 25th in Auckland
    client = create_app(services=build_services(settings, clock=lambda: noon_utc)).test_client()
    assert post_plan(client, auth, invoices=[]).get_json()["today"] == "2026-11-24"
    body = post_plan(client, auth, timezone="Pacific/Auckland", invoices=[]).get_json()
    assert (body["today"], body["timezone"]) == ("2026-11-25", "Pacific/Auckland")
    explicit = post_plan(client, auth, today="2025-01-22", timezone="Pacific/Auckland", invoices=[])
    assert explicit.get_json()["today"] == "2025-01-22"


def test_unknown_timezone_and_bad_date_are_422(client: FlaskClient, auth: dict[str, str]) -> None:
    r = post_plan(client, auth, timezone="Mars/Olympus", invoices=[])
    assert r.status_code == 422
    assert "timezone" in json.dumps(r.get_json()["error"]["details"])
    assert post_plan(client, auth, today="2025-02-30", invoices=[]).status_code == 422


def test_a_scope_with_control_characters_is_422_before_anything_is_drafted(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    # It keys the ledger and a header of every draft: NUL broke PostgreSQL (a 500), CR/LF the
    # header (every row an error).
    row = invoice_row(invoice_id="S-1")
    for scope in ("a\x00b", "a\r\nBcc: x@y.example.com", "tab\there", "   "):
        for route in ("/v1/plan", "/v1/drafts"):
            body = {"today": "2025-01-22", "scope": scope, "invoices": [row]}
            r = client.post(route, json=body, headers=auth)
            assert r.status_code == 422, (scope, route)
            assert "scope" in json.dumps(r.get_json()["error"]["details"])
    ok = {"today": "2025-01-22", "scope": "Büro/1AbC-_x.csv", "invoices": [row]}
    assert client.post("/v1/plan", json=ok, headers=auth).status_code == 200


def test_malformed_requests_get_json_errors_not_500(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    h = {**auth, "Content-Type": "application/json"}
    cases = [
        ("{not json", 400),
        ("[]", 422),
        ('{"invoices": "x"}', 422),
        ('{"invoices": [1]}', 422),
        ('{"invoices": [], "extra": 1}', 422),
        ("null", 422),
        ('"x"', 422),
    ]
    for data, status in cases:
        r = client.post("/v1/plan", data=data, headers=h)
        assert r.status_code == status, data
        assert r.is_json and set(r.get_json()["error"]) >= {"code", "message"}


def test_a_row_number_that_is_no_sheet_row_is_422_and_nothing_is_drafted(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    # Results are written back by `row`: a wrong one would land beside another invoice.
    h = {**auth, "Content-Type": "application/json"}
    good = json.dumps(invoice_row(invoice_id="OK-1", row=2))
    for bad in ("0", "-5", '"7"', "7.0", "true", "10000001", "123456789012345678901"):
        row = json.dumps(invoice_row(invoice_id="BAD-1")).replace("{", f'{{"row": {bad}, ', 1)
        data = f'{{"today": "2025-01-22", "invoices": [{good}, {row}]}}'
        for route in ("/v1/plan", "/v1/drafts"):
            r = client.post(route, data=data, headers=h)
            assert r.status_code == 422, (bad, route, r.get_json())
            details = json.dumps(r.get_json()["error"]["details"])
            assert '"1"' in details and "sheet row number" in details, details
    with client.application.app_context():
        maildir = services().settings.maildir_path
    assert not maildir.exists() or not any(maildir.rglob("*.eml"))


def test_a_null_or_top_row_number_is_accepted(client: FlaskClient, auth: dict[str, str]) -> None:
    rows = [invoice_row(invoice_id="A", row=None), invoice_row(invoice_id="B", row=10_000_000)]
    r = post_plan(client, auth, today="2025-01-22", invoices=rows)
    assert r.status_code == 200, r.get_json()
    assert [row["row"] for row in r.get_json()["rows"]] == [2, 10_000_000]


def test_a_cell_only_the_json_module_reads_is_that_rows_error_not_the_requests(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    # orjson refuses integers beyond 64 bits; the body is still JSON, so the row must fail alone.
    good = json.dumps(invoice_row(invoice_id="OK-1"))
    big = "123456789012345678901"  # > 2**64
    huge = json.dumps(invoice_row(invoice_id="BIG-1")).replace('"1250.00"', big)
    data = f'{{"today": "2025-01-22", "invoices": [{good}, {huge}]}}'
    r = client.post("/v1/plan", data=data, headers={**auth, "Content-Type": "application/json"})
    assert r.status_code == 200, r.get_json()
    rows = {row["invoice_id"]: row for row in r.get_json()["rows"]}
    assert rows["OK-1"]["action"] == "draft"
    assert rows["BIG-1"]["action"] == "draft"
    assert rows["BIG-1"]["balance"] == big  # exact: read as an int, not a float


def test_oversized_body_is_413_json(
    make_settings: Callable[..., Settings], auth: dict[str, str]
) -> None:
    app = create_app(services=build_services(make_settings(MAX_REQUEST_BYTES="2048")))
    r = app.test_client().post("/v1/plan", json={"invoices": [invoice_row()] * 50}, headers=auth)
    assert r.status_code == 413
    assert r.get_json()["error"]["code"] == "payload_too_large"


def test_too_many_rows_is_413_with_advice(
    make_settings: Callable[..., Settings], auth: dict[str, str]
) -> None:
    app = create_app(services=build_services(make_settings(MAX_ROWS_PER_REQUEST="3")))
    r = app.test_client().post("/v1/plan", json={"invoices": [invoice_row()] * 4}, headers=auth)
    assert r.status_code == 413 and "chunks" in r.get_json()["error"]["message"]


def test_unknown_route_and_method_are_json(client: FlaskClient, auth: dict[str, str]) -> None:
    assert client.get("/nope").get_json()["error"]["code"] == "not_found"
    assert client.get("/v1/plan", headers=auth).get_json()["error"]["code"] == "method_not_allowed"


def test_example_sheet_response_conforms_to_the_documented_schema(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    body = json.loads((PROJECT_ROOT / "examples" / "plan-request.json").read_text())
    r = client.post("/v1/plan", json=body, headers=auth)
    data = r.get_json()
    assert PlanResponseSchema().validate(data) == {}
    for row in data["rows"]:
        assert RowResultSchema().validate(row) == {}
    reasons = {row["reason"] for row in data["rows"]}
    assert reasons >= {
        "due",
        "closed_status",
        "zero_balance",
        "not_due",
        "already_drafted_today",
        "stage_already_drafted",
        "invalid_row",
        "duplicate_invoice_id",
    }
    assert {row["stage"] for row in data["rows"] if row["action"] == "draft"} == {
        7,
        14,
        21,
        28,
        35,
        42,
    }
    assert {t["currency"] for t in data["totals"]} == {"USD", "GBP", "EUR", "JPY"}


def test_example_request_matches_the_example_sheet() -> None:
    import csv

    body = json.loads((PROJECT_ROOT / "examples" / "plan-request.json").read_text())
    with (PROJECT_ROOT / "examples" / "invoices.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [{k: v for k, v in r.items() if k != "row"} for r in body["invoices"]] == rows


def test_templates_endpoint_lists_stages_and_reports_broken_ones(
    make_settings: Callable[..., Settings], auth: dict[str, str], tmp_path: Path
) -> None:
    for stage in (7, 14):
        (tmp_path / f"stage_{stage:02d}.txt").write_text(
            "Subject: {{ invoice_id }}\n\nHi {{ name }}"
        )
    (tmp_path / "stage_14.txt").write_text("Subject: x\n\nHi {{ nme }}")
    app = create_app(
        services=build_services(make_settings(TEMPLATES_DIR=str(tmp_path), STAGES="7,14"))
    )
    client = app.test_client()
    body = client.get("/v1/templates", headers=auth).get_json()
    assert body["stages"] == [7, 14]
    assert "nme" in body["errors"]["14"]
    assert [t["ok"] for t in body["templates"]] == [True, False]
    rows = client.post(
        "/v1/plan",
        headers=auth,
        json={
            "today": "2025-01-30",
            "invoices": [
                invoice_row(invoice_id="A", due_date="2025-01-20"),
                invoice_row(invoice_id="B", due_date="2025-01-10"),
            ],
        },
    ).get_json()["rows"]
    assert [(r["action"], r["reason"]) for r in rows] == [
        ("draft", "due"),
        ("error", "template_error"),
    ]


def test_openapi_document_is_generated_from_the_schemas(client: FlaskClient) -> None:
    doc = client.get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    assert {"/healthz", "/v1/plan", "/v1/templates"} <= set(doc["paths"])
    schemas = doc["components"]["schemas"]
    assert "invoices" in schemas["PlanRequest"]["properties"]
    assert "writeback" in schemas["RowResult"]["properties"]
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


@pytest.mark.parametrize("route", ["/v1/plan", "/v1/drafts"])
def test_json_nested_a_hundred_thousand_deep_is_a_400_not_a_500(
    client: FlaskClient, auth: dict[str, str], route: str
) -> None:
    body = '{"invoices": ' + "[" * 100_000 + "]" * 100_000 + "}"
    response = client.post(route, data=body, headers={**auth, "Content-Type": "application/json"})
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_request"
    assert "nested too deeply" in str(error["details"])
