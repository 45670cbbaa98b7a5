"""SheetPlanner.read: a large sheet's body read in parts by the helpers that then plan them,
answering exactly as the body read whole and planned in one process, whatever fails."""

from __future__ import annotations

import datetime as dt
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from service.api.jsonio import loads, with_rows
from service.api.plan_report import SheetPlanner
from service.api.sheet_rows import SheetRows
from service.bootstrap import Services, build_services
from service.config import Settings
from service.parallel import Sharing
from tests.conftest import invoice_row

TODAY = dt.date(2025, 2, 20)


@pytest.fixture
def svc(settings: Settings) -> Services:
    return build_services(settings)


@pytest.fixture(params=[2, 3])
def planner(svc: Services, request: pytest.FixtureRequest) -> Iterator[SheetPlanner]:
    assert threading.active_count() == 1, "helpers are forked by a single-threaded process only"
    sharing = Sharing(request.param, min_items=2)
    planner = SheetPlanner(svc.plan_settings, svc.templates, svc.settings.locale, sharing)
    yield planner
    planner.close()


def sheet(count: int = 30, **overrides: Any) -> list[dict[str, Any]]:
    rows = [invoice_row(invoice_id=f"INV-{i}", client_name=f"Client {i}") for i in range(count)]
    for index, row in overrides.items():
        rows[int(index.removeprefix("row"))] = row
    return rows


def body_of(rows: list[Any]) -> bytes:
    return orjson.dumps({"today": TODAY.isoformat(), "invoices": rows})


def answer(planner: SheetPlanner, rows: list[Any] | SheetRows) -> dict[str, Any]:
    report = planner.report(rows, today=TODAY)
    return orjson.loads(with_rows({"summary": report.summary}, report.rows))  # type: ignore[no-any-return]


def one_process(svc: Services, body: bytes) -> dict[str, Any]:
    alone = SheetPlanner(svc.plan_settings, svc.templates, svc.settings.locale, Sharing())
    return answer(alone, loads(body)["invoices"])


def read(planner: SheetPlanner, body: bytes) -> dict[str, Any]:
    planner.expect(len(body))
    document = planner.read(body)
    assert document is not None
    return document


def test_a_sheet_read_in_parts_plans_as_the_whole_body_in_one_process(
    planner: SheetPlanner, svc: Services
) -> None:
    body = body_of(sheet())
    for _ in "12":  # the second request finds the same helpers
        document = read(planner, body)
        rows = document["invoices"]
        assert isinstance(rows, SheetRows)
        assert [p.holder for p in rows.parts] == planner.helper_pids
        assert document["today"] == TODAY.isoformat() and len(rows) == 30
        assert answer(planner, rows) == one_process(svc, body)
        assert [p.holder for p in rows.parts] == [None] * len(rows.parts)  # given up


def test_a_helper_that_dies_after_reading_its_part_costs_only_time(
    planner: SheetPlanner, svc: Services
) -> None:
    body = body_of(sheet())
    rows = read(planner, body)["invoices"]
    os.kill(planner.helper_pids[-1], signal.SIGKILL)
    time.sleep(0.1)
    assert answer(planner, rows) == one_process(svc, body)


def test_an_id_in_two_parts_is_a_duplicate_in_both(planner: SheetPlanner, svc: Services) -> None:
    body = body_of(sheet(row29=invoice_row(invoice_id="INV-0")))
    out = answer(planner, read(planner, body)["invoices"])
    assert [out["rows"][i]["reason"] for i in (0, 29)] == ["duplicate_invoice_id"] * 2
    assert out == one_process(svc, body)


def test_bad_rows_in_a_helpers_part_are_found_there(planner: SheetPlanner) -> None:
    body = body_of(sheet(row27="not a row", row29={"row": 0}))
    rows = read(planner, body)["invoices"]
    assert isinstance(rows, SheetRows)
    assert rows.problems == {
        27: "Each row must be an object.",
        29: "`row` must be a sheet row number from 1 to 10,000,000.",
    }
    planner.forget(rows)


def test_rows_a_helper_holds_for_a_plan_that_never_comes_are_dropped(
    planner: SheetPlanner, svc: Services
) -> None:
    body = body_of(sheet())
    rows = read(planner, body)["invoices"]
    assert isinstance(rows, SheetRows)
    planner.forget(rows)
    assert [p.holder for p in rows.parts] == [None] * len(rows.parts)
    # The parts are then planned here, from the body: the helpers no longer hold them.
    assert answer(planner, rows) == one_process(svc, body)


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        body_of(sheet(1)),  # no gap between rows to cut at
        b'{"invoices":' + orjson.dumps(sheet()) + b',"today":"2025-02-20"}',  # rows not last
        # A number orjson would misread, in the last part.
        body_of(sheet())[:-2] + b',{"amount":123456789012345678901234567}]}',
        body_of(sheet())[:-2] + b",]}",  # not JSON
    ],
    ids=["not an object", "one row", "rows not last", "a long number", "not JSON"],
)
def test_a_body_not_read_in_parts_is_left_to_be_read_whole(
    planner: SheetPlanner, body: bytes
) -> None:
    planner.expect(10_000)
    assert planner.read(body) is None
    # Nothing is left held: the helpers answer the next sheet.
    assert isinstance(read(planner, body_of(sheet()))["invoices"], SheetRows)


def test_a_small_body_starts_no_helper_and_is_read_whole(planner: SheetPlanner) -> None:
    body = b'{"invoices":[{},{}]}'  # under 100 bytes a row: no sheet worth sharing
    planner.expect(len(body))
    assert planner.read(body) is None
    assert planner.helper_pids == []
