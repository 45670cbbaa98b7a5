"""Aging, top clients and DSO (issue 19), against figures worked out by hand."""

from __future__ import annotations

import csv
import datetime as dt
import json
from decimal import Decimal
from typing import Any

from flask.testing import FlaskClient

from service.config import PROJECT_ROOT
from service.domain.aging import aging, bucket_of
from service.domain.invoice import Invoice
from tests.conftest import SHARED_DATA, require_shared_data


def _by_currency(client: FlaskClient, auth: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/plan", json=body, headers=auth)
    assert response.status_code == 200, response.get_json()
    return {a["currency"]: a for a in response.get_json()["aging"]}


def test_the_example_sheet_ages_as_worked_out_by_hand(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    body = json.loads((PROJECT_ROOT / "examples" / "plan-request.json").read_text())
    usd = _by_currency(client, auth, body)["USD"]  # on 2026-11-24
    buckets = {b["bucket"]: b["amount"] for b in usd["buckets"]}
    # current: INV-1010 (due 12-15). 1-30: 1001 1250 + 1002 2480 + 1003 780.50 + 1008 1300
    # (2100 less 800 paid) + 1009 640 + 1016 2750 + 1017 615.75 + 1023 12400. 31-60: 1005.
    # 61-90: 1007 (84 days). Closed (1011 paid, 1012 disputed, 1013 on hold, 1014 void),
    # paid-up (1015) and broken rows (1020, 1021, the two 1022) are not open.
    assert {k: Decimal(v) for k, v in buckets.items()} == {
        "current": Decimal("1800"),
        "1-30": Decimal("22216.25"),
        "31-60": Decimal("5600"),
        "61-90": Decimal("950"),
        "90+": Decimal("0"),
    }
    assert Decimal(usd["open"]["amount"]) == Decimal("30566.25")
    assert usd["open"]["formatted"] == "$30,566.25"
    assert [c["client_name"] for c in usd["top_clients"]] == [
        "Canyon Solar", "Maple & Oak Carpentry", "Brightline Media", "Blue Sky Bakery",
        "Lumen Studio",
    ]  # fmt: skip
    # DSO: 30,566.25 open ÷ 40,676.25 invoiced since 2026-08-26 (every valid USD row but
    # INV-1007, sent 08-02; paid and closed ones count) × 90 = 67.6 days.
    assert usd["dso_days"] == "67.6"


def test_without_sent_dates_dso_says_what_it_needs(
    client: FlaskClient, auth: dict[str, str]
) -> None:
    row = {"invoice_id": "A", "client_name": "Ann", "client_email": "a@x.example.com",
           "amount": "100", "due_date": "2025-01-01"}  # fmt: skip
    usd = _by_currency(client, auth, {"today": "2025-03-01", "invoices": [row]})["USD"]
    assert usd["dso_days"] is None and usd["dso_note"] == "needs sent_date"
    assert {b["bucket"]: b["amount"] for b in usd["buckets"]}["31-60"] == "100"


def test_bucket_edges() -> None:
    assert [bucket_of(d) for d in (-5, 0, 1, 30, 31, 60, 61, 90, 91)] == [
        "current", "current", "1-30", "1-30", "31-60", "31-60", "61-90", "61-90", "90+",
    ]  # fmt: skip


def test_the_ibm_histories_age_as_an_independent_count_says() -> None:
    path = SHARED_DATA / "ibm_ar_late_payment_histories.csv"
    require_shared_data(path)
    day = dt.date(2013, 6, 3)
    expected: dict[str, Decimal] = {"current": Decimal(0), "1-30": Decimal(0), "31-60": Decimal(0),
                                    "61-90": Decimal(0), "90+": Decimal(0)}  # fmt: skip
    pairs, invoiced = [], Decimal(0)

    def mdy(text: str) -> dt.date:
        return dt.datetime.strptime(text, "%m/%d/%Y").date()

    with path.open(newline="", encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            sent, due, settled = mdy(r["InvoiceDate"]), mdy(r["DueDate"]), mdy(r["SettledDate"])
            if sent > day:
                continue
            amount = Decimal(r["InvoiceAmount"])
            if day - dt.timedelta(90) < sent:
                invoiced += amount
            is_open = settled > day
            if is_open:
                late = (day - due).days
                label = ("current" if late <= 0 else "1-30" if late <= 30 else "31-60"
                         if late <= 60 else "61-90" if late <= 90 else "90+")  # fmt: skip
                expected[label] += amount
            invoice = Invoice(r["invoiceNumber"], r["customerID"], ("ap@x.example.com",), amount,
                              "USD", due, sent_date=sent)  # fmt: skip
            pairs.append((invoice, is_open))
    usd = aging(pairs, day)["USD"]
    assert usd.buckets == expected
    assert sum(expected.values()) > 0 and usd.open_balance == sum(expected.values())
    assert usd.dso == (usd.open_balance / invoiced * 90).quantize(Decimal("0.1"))
