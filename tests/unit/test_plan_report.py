"""plan_report: a sheet planned in shares, on several processes, reads exactly as in one."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.api.jsonio import with_rows
from service.api.plan_report import PlanReport, plan_report
from service.bootstrap import Services
from service.config import Settings
from service.parallel import Sharing
from tests.conftest import invoice_row

TODAY = dt.date(2025, 2, 20)


def report(svc: Services, rows: list[dict[str, Any]], sharing: Sharing) -> PlanReport:
    return plan_report(
        rows,
        today=TODAY,
        settings=svc.plan_settings,
        templates=svc.templates,
        locale=svc.settings.locale,
        sharing=sharing,
    )


def as_json(r: PlanReport) -> dict[str, Any]:
    return orjson.loads(with_rows({"summary": r.summary, "totals": r.totals}, r.rows))  # type: ignore[no-any-return]


cells = st.fixed_dictionaries(
    {
        "invoice_id": st.sampled_from([f"INV-{i}" for i in range(40)] + ["", " INV-1 "]),
        "amount": st.sampled_from(["100.00", "$1,234.50", "0", "abc", 99.5]),
        "amount_paid": st.sampled_from(["", "50", "1234.50"]),
        "currency": st.sampled_from(["USD", "EUR", "usd", "XXQ"]),
        "due_date": st.dates(dt.date(2024, 11, 1), dt.date(2025, 3, 1)).map(str),
        "status": st.sampled_from(["Overdue", "Paid", "", "on hold"]),
        "last_stage_sent": st.sampled_from(["", "7", "21", "x"]),
        "last_sent_at": st.sampled_from(["", "2025-02-20", "2025-02-01"]),
    }
).map(lambda overrides: invoice_row(**overrides))


# Planning reads the services (settings, templates) and changes nothing in them.
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(rows=st.lists(cells, max_size=60), processes=st.integers(2, 4))
def test_shares_on_several_processes_read_as_one(
    services_for_report: Services, rows: list[dict[str, Any]], processes: int
) -> None:
    one = report(services_for_report, list(rows), Sharing())
    shared = report(services_for_report, list(rows), Sharing(processes, min_items=1))
    assert as_json(shared) == as_json(one)


def test_an_id_in_two_shares_is_a_duplicate_in_both(
    services_for_report: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [invoice_row(invoice_id=f"INV-{i}") for i in range(10)]
    rows[9] = invoice_row(invoice_id=" INV-0 ")  # the first share's first ID, in the last share
    forks = []
    real = os.fork
    monkeypatch.setattr(os, "fork", lambda: forks.append(1) or real())
    out = as_json(report(services_for_report, list(rows), Sharing(2, min_items=4)))
    # Each share found nothing wrong on its own; the ID in both sends them round again.
    assert forks == [1, 1]
    assert [r["reason"] for r in out["rows"]][::9] == ["duplicate_invoice_id"] * 2
    assert [r["row"] for r in out["rows"]] == list(range(2, 12))
    assert out == as_json(report(services_for_report, list(rows), Sharing()))


def test_a_sheet_without_repeated_ids_is_planned_once(
    services_for_report: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [invoice_row(invoice_id=f"INV-{i}") for i in range(10)]
    rows[3] = invoice_row(invoice_id="INV-2")  # repeated within one share: that share sees it
    forks = []
    real = os.fork
    monkeypatch.setattr(os, "fork", lambda: forks.append(1) or real())
    out = as_json(report(services_for_report, list(rows), Sharing(2, min_items=4)))
    assert forks == [1]
    assert [r["reason"] for r in out["rows"]][2:4] == ["duplicate_invoice_id"] * 2
    assert out == as_json(report(services_for_report, list(rows), Sharing()))


def test_the_rows_are_taken(services_for_report: Services) -> None:
    rows = [invoice_row(invoice_id=f"INV-{i}") for i in range(6)]
    report(services_for_report, rows, Sharing(2, min_items=2))
    assert rows == []  # so the caller holds none of them while they are planned


def test_rows_are_numbered_as_sheet_rows_across_shares(services_for_report: Services) -> None:
    rows = [invoice_row(invoice_id=f"INV-{i}") for i in range(7)]
    rows[5]["row"] = 40  # a row that brings its own number keeps it
    out = as_json(report(services_for_report, rows, Sharing(3, min_items=1)))
    assert [r["row"] for r in out["rows"]] == [2, 3, 4, 5, 6, 40, 8]
    assert out["summary"]["total"] == 7


@pytest.fixture
def services_for_report(settings: Settings) -> Services:
    from service.bootstrap import build_services

    return build_services(settings)
