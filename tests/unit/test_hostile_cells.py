"""No cell, however odd, fails a plan: it makes its own row an error row and nothing more.

A sheet is typed by people: superscripts, "inf", NaN from a JSON body, dates at the ends of
the calendar. Each once escaped as an exception and turned a whole plan into a 500.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.api.schemas import PlanResponseSchema
from service.bootstrap import Services, build_services
from service.config import Settings
from service.domain.invoice import (
    INPUT_FIELDS,
    OUTPUT_FIELDS,
    Invoice,
    ParseOptions,
    RowError,
    parse_row,
)
from service.usecases.plan import plan
from service.usecases.report import overdue_totals, planned_row_dict, summarize
from tests.conftest import invoice_row

COLUMNS = INPUT_FIELDS + OUTPUT_FIELDS
OPTS = ParseOptions()
ODD = [
    "inf", "-Infinity", "NaN", "sNaN", "1e9999", "-0", "5²", "①", "٣", "\x00", "%s", "{{ 7*7 }}",
    "9999-12-31", "0001-01-01", "2958465", "99999999999999999999999.999", "0.000000001",
    "USD", "JPY", "BHD", "12k", "€99", "(5)", 10**70, -(10**70), 1.7976931348623157e308,
]  # fmt: skip
cells = st.one_of(
    st.text(max_size=12),
    st.text(alphabet="0123456789.,$€()- ²³①٣eE:/T", max_size=12),
    st.integers(-10, 3_000_000),
    st.integers(),
    st.floats(),
    st.none(),
    st.booleans(),
    st.dates().map(str),
    st.sampled_from(ODD),
)
# A valid row with two of its cells replaced: most rows get far enough to be decided and drafted.
rows = st.tuples(st.sampled_from(COLUMNS), cells, st.sampled_from(COLUMNS), cells).map(
    lambda t: invoice_row(**{t[0]: t[1], t[2]: t[3]})
)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(rows=st.lists(rows, min_size=1, max_size=4), today=st.dates(), gap=st.integers(0, 10))
def test_no_cell_fails_a_plan(
    services: Services, rows: list[dict[str, Any]], today: dt.date, gap: int
) -> None:
    plan_settings = services.plan_settings
    policy = dataclasses.replace(plan_settings.policy, min_gap_days=gap)
    planned = plan(
        list(rows),
        today=today,
        settings=dataclasses.replace(plan_settings, policy=policy),
        templates=services.templates,
    )
    out = [planned_row_dict(p) for p in planned]
    assert summarize(out)["total"] == len(rows)
    body = {"today": today, "timezone": "UTC", "summary": summarize(out), "rows": out}
    json.dumps(PlanResponseSchema().dump({**body, "totals": overdue_totals(planned, "en_US")}))


@pytest.mark.parametrize(
    ("column", "cell"),
    [
        ("amount", "5²"),  # str.isdigit() says yes; Decimal says no
        ("amount", "①"),
        ("amount_paid", "²"),
        ("due_date", "inf"),  # a serial number of infinite days
        ("due_date", float("inf")),
        ("last_sent_at", float("nan")),
        ("last_stage_sent", "INF"),
        ("last_stage_sent", "sNaN"),  # a signalling NaN raises on comparison
    ],
)
def test_an_odd_number_is_that_fields_error(column: str, cell: object) -> None:
    parsed = parse_row(invoice_row(**{column: cell}), OPTS)
    assert isinstance(parsed, RowError)
    assert list(parsed.fields) == [column]


def test_digits_of_other_scripts_are_no_amount() -> None:
    # Decimal reads "٣" as 3; nobody keys an Arabic-Indic digit into a ledger's amount by design.
    assert isinstance(parse_row(invoice_row(amount="٣"), OPTS), RowError)
    assert isinstance(parse_row(invoice_row(amount="3"), OPTS), Invoice)


def test_nan_and_infinity_in_a_json_body_are_row_errors(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    # The json module reads NaN and Infinity; a body with one must fail its row, not the request.
    data = (
        '{"today": "2025-01-22", "invoices": ['
        '{"invoice_id": "OK-1", "client_name": "A", "client_email": "a@b.example.com",'
        ' "amount": "10", "due_date": "2025-01-01"},'
        '{"invoice_id": "INF-1", "client_name": "A", "client_email": "a@b.example.com",'
        ' "amount": "10", "due_date": Infinity, "last_stage_sent": NaN}]}'
    )
    r = client.post("/v1/plan", data=data, headers={**auth, "Content-Type": "application/json"})
    assert r.status_code == 200, r.get_json()
    rows = {row["invoice_id"]: row for row in r.get_json()["rows"]}
    assert rows["OK-1"]["action"] == "draft"
    assert rows["INF-1"]["action"] == "error"
    assert set(rows["INF-1"]["errors"]) == {"due_date", "last_stage_sent"}


@pytest.fixture
def services(settings: Settings) -> Services:
    return build_services(settings)
