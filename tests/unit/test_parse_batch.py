"""parse_rows: a batch parsed column by column gives exactly what each row parsed alone gives."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.domain import invoice as invoice_module
from service.domain.invoice import Invoice, ParseOptions, RowError, invoice_ids, parse_rows
from tests.conftest import invoice_row

OPTS = ParseOptions(date_format="%m/%d/%Y")

# Cells that are equal as set members but not as cells (1, 1.0, True; 0, 0.0, -0.0, False),
# text and numbers for the same value, blanks, and cells no reader accepts.
TRICKY = [1, 1.0, True, 0, 0.0, -0.0, False, None, "", "  ", [1], {"a": 1}, 45000, 45000.0]
CELLS: dict[str, list[Any]] = {
    "invoice_id": ["INV-1", "INV-2", " INV-3 ", 1001, 1001.0, "A\x07B"],
    "client_name": ["Ann", "Bob Ltd", "{{ 7*7 }}"],
    "client_email": ["ann@example.com", "a@example.com; b@example.com", "not-an-email"],
    "amount": ["1250.00", "$1,234.50", "(5)", "-3", 99, 99.5, "12abc", "€99", "EUR 5", "5 usd"],
    "currency": ["USD", "eur", "XXQ"],
    "due_date": ["2025-01-15", "1/15/2025", 45672, 45672.75, "15/01/2025", "2025-02-30"],
    "sent_date": ["2024-12-15", 45641],
    "status": ["Overdue", "Paid", "on-hold"],
    "amount_paid": ["100", "0", "-1", "£5", "USD 1"],
    "notes": ["net 30", "call first"],
    "last_stage_sent": ["7", 14, "14.0", "1.5", "-7", 21.0],
    "last_sent_at": ["2025-01-20", 45677],
}


@st.composite
def sheet_rows(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(min_value=1, max_value=12))
    rows = []
    for _ in range(count):
        row: dict[str, Any] = {}
        for name, cells in CELLS.items():
            if draw(st.integers(0, 9)) == 0:
                continue  # the row lacks this column
            row[name] = draw(st.sampled_from(cells + TRICKY))
        rows.append(row)
    return rows


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(sheet_rows())
def test_a_batch_parses_exactly_as_its_rows_parsed_one_by_one(rows: list[dict[str, Any]]) -> None:
    rows = rows + rows[::-1] + rows  # repeated cells: the batch reads each distinct one once
    numbers = list(range(2, 2 + len(rows)))
    batch = parse_rows(rows, OPTS, numbers)
    alone = [parse_rows([row], OPTS, [n])[0] for row, n in zip(rows, numbers, strict=True)]
    assert batch == alone
    # Equal tuples are not enough: 1 and True, 0.0 and -0.0 compare equal but print apart.
    assert [repr(r) for r in batch] == [repr(r) for r in alone]
    # The IDs alone, as a plan in shares reads them to find duplicates across shares.
    assert invoice_ids(rows, OPTS) == [r.invoice_id for r in batch]


def test_each_distinct_cell_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[object] = []
    real = invoice_module.parse_date

    def counting(value: object, date_format: str | None = None) -> dt.date | None:
        seen.append(value)
        return real(value, date_format)

    monkeypatch.setattr(invoice_module, "parse_date", counting)
    dues = ["2025-01-15", "2025-02-01", "2025-03-01"]
    rows = [invoice_row(invoice_id=f"INV-{i}", due_date=dues[i % 3]) for i in range(1000)]
    parsed = parse_rows(rows, ParseOptions())
    assert all(isinstance(p, Invoice) for p in parsed)
    assert sorted(p.due_date.isoformat() for p in parsed[:3]) == dues  # type: ignore[union-attr]
    # due_date: 3 distinct cells; sent_date and last_sent_at: absent, one blank each.
    assert sorted(map(str, seen)) == sorted([*dues, "None", "None"])


def test_rows_spelling_a_header_differently_each_keep_their_own_value() -> None:
    rows = [
        {**invoice_row(), "invoice_id": "A-1"},
        {**{k: v for k, v in invoice_row().items() if k != "invoice_id"}, "Invoice ID": "B-2"},
        # both spellings on one row: the later key wins, as it always has
        {**invoice_row(), "invoice_id": "C-3", "INVOICE-ID": "C-4"},
    ]
    parsed = parse_rows(rows, ParseOptions())
    assert [p.invoice_id for p in parsed] == ["A-1", "B-2", "C-4"]


def test_every_bad_field_of_a_row_is_reported_and_the_others_parse() -> None:
    rows = [
        invoice_row(invoice_id="OK-1"),
        invoice_row(invoice_id="", client_email="nope", amount="-5", due_date="someday"),
        invoice_row(invoice_id="OK-2", amount_paid="12.50"),
    ]
    first, bad, last = parse_rows(rows, ParseOptions(), [2, 3, 4])
    assert isinstance(first, Invoice)
    assert isinstance(last, Invoice)
    assert last.amount_paid == Decimal("12.50")
    assert isinstance(bad, RowError)
    assert bad.row == 3
    assert bad.invoice_id == ""
    assert list(bad.fields) == ["invoice_id", "client_email", "amount", "due_date"]
    assert bad.fields["amount"] == "must not be negative"


def test_rows_with_as_many_headers_but_other_ones_are_read_by_name() -> None:
    a, b = invoice_row(invoice_id="A", notes="n"), invoice_row(invoice_id="B", notes="m")
    del a["notes"]
    a["Extra"] = "x"  # as many headers as the other rows, not the same ones
    b["Invoice ID"] = b.pop("invoice_id")  # another spelling, in another place
    rows = [b, a, b]
    batch = parse_rows(rows, OPTS, [2, 3, 4])
    assert batch == [parse_rows([r], OPTS, [n])[0] for r, n in zip(rows, [2, 3, 4], strict=True)]
    assert [(p.invoice_id, p.notes) for p in batch] == [("B", "m"), ("A", ""), ("B", "m")]  # type: ignore[union-attr]
