"""Real accounts-receivable data: IBM's late-payment histories, read with its own headers."""

from __future__ import annotations

import csv
import datetime as dt

from service.domain.decide import Action, Policy, decide
from service.domain.invoice import Invoice, ParseOptions, parse_row
from tests.conftest import SHARED_DATA, require_shared_data

IBM_CSV = SHARED_DATA / "ibm_ar_late_payment_histories.csv"

# The file's own headers mapped to ours by configuration (COLUMN_MAP), dates as M/D/YYYY.
IBM_OPTIONS = ParseOptions(
    date_format="%m/%d/%Y",
    column_map={
        "invoice_id": "invoiceNumber",
        "client_name": "customerID",
        "amount": "InvoiceAmount",
        "due_date": "DueDate",
        "sent_date": "InvoiceDate",
    },
)


def ibm_rows() -> list[dict[str, str]]:
    require_shared_data(IBM_CSV)
    with IBM_CSV.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        # The data set has no email column; each customer gets a stable synthetic address.
        row["client_email"] = f"ap+{row['customerID'].lower()}@customers.example.com"
    return rows


def test_every_ibm_row_parses_with_its_own_headers_and_us_dates() -> None:
    rows = ibm_rows()
    assert len(rows) == 2466
    parsed = [parse_row(r, IBM_OPTIONS, row=i) for i, r in enumerate(rows, start=2)]
    bad = [p for p in parsed if not isinstance(p, Invoice)]
    assert bad == []
    invoices = [p for p in parsed if isinstance(p, Invoice)]
    # invoiceNumber is zero-padded text and must stay so.
    assert invoices[0].invoice_id == "0000611365"
    assert len({i.invoice_id for i in invoices}) == 2466
    # Invariant of the data set: DueDate = InvoiceDate + 30, including around leap days.
    assert all(i.sent_date and (i.due_date - i.sent_date).days == 30 for i in invoices)
    assert sum(1 for r in rows if "/29/" in r["DueDate"] or "/29/" in r["InvoiceDate"]) > 0


def test_days_overdue_on_the_settled_date_equals_days_late_for_all_rows() -> None:
    mismatches = []
    for i, raw in enumerate(ibm_rows(), start=2):
        invoice = parse_row(raw, IBM_OPTIONS, row=i)
        assert isinstance(invoice, Invoice)
        settled = dt.datetime.strptime(raw["SettledDate"], "%m/%d/%Y").date()
        decision = decide(invoice, settled, Policy())
        if decision.days_overdue != int(raw["DaysLate"]):
            mismatches.append((raw["invoiceNumber"], decision.days_overdue, raw["DaysLate"]))
    assert mismatches == []


def test_disputed_ibm_invoices_are_never_drafted_when_status_says_so() -> None:
    rows = ibm_rows()
    disputed = [r | {"status": "Disputed"} for r in rows if r["Disputed"] == "Yes"]
    assert disputed
    for raw in disputed:
        invoice = parse_row(raw, IBM_OPTIONS)
        assert isinstance(invoice, Invoice)
        far_future = invoice.due_date + dt.timedelta(days=100)
        assert decide(invoice, far_future, Policy()).action is Action.SKIP
