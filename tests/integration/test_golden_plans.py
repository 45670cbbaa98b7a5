"""The plan's answers are pinned: the redesign of the plan path (issue 15) changed no answer.

`plan-request.response.json` is the response to `examples/plan-request.json`, recorded with the
code before the redesign; the IBM histories' plans, on one day a month over two years, are
pinned by a hash (the data set may not be copied into the project).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient

from service.api.app import create_app
from service.bootstrap import build_services
from service.config import PROJECT_ROOT, settings_from_env
from tests.conftest import FIXED_NOW, SHARED_DATA, require_shared_data

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
IBM_CSV = SHARED_DATA / "ibm_ar_late_payment_histories.csv"
IBM_COLUMNS = (
    "invoice_id=invoiceNumber,client_name=customerID,amount=InvoiceAmount,"
    "due_date=DueDate,sent_date=InvoiceDate"
)


def _client(tmp_path: Path, **env: str) -> FlaskClient:
    base = {
        "API_KEYS": "golden-key",
        "MAILDIR_PATH": str(tmp_path / "Maildir"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
        "SENDS_LOG": "off",
        # The seed's rule, as recorded: any day is a drafting day.
        "BUSINESS_DAYS": "false",
        "TIMEZONE": "UTC",
        **env,
    }
    services = build_services(settings_from_env(base), clock=lambda: FIXED_NOW)
    return create_app(services=services).test_client()


def _plan(client: FlaskClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/plan", json=body, headers={"Authorization": "Bearer golden-key"})
    assert response.status_code == 200, response.data[:500]
    data: dict[str, Any] = response.get_json()
    return data


def test_the_example_request_plans_as_before(tmp_path: Path) -> None:
    body = json.loads((PROJECT_ROOT / "examples" / "plan-request.json").read_text())
    expected = json.loads((GOLDEN / "plan-request.response.json").read_text())
    assert _plan(_client(tmp_path), body) == expected


def _ibm_days() -> Iterator[dt.date]:
    day = dt.date(2012, 2, 1)
    while day < dt.date(2014, 1, 1):
        yield day
        day = (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)


def test_the_ibm_histories_plan_as_before(tmp_path: Path) -> None:
    require_shared_data(IBM_CSV)
    with IBM_CSV.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    client = _client(tmp_path, DATE_FORMAT="%m/%d/%Y", COLUMN_MAP=IBM_COLUMNS)
    digest = hashlib.sha256()
    for day in _ibm_days():
        invoices = []
        for r in rows:
            settled = dt.datetime.strptime(r["SettledDate"], "%m/%d/%Y").date()
            status = "Paid" if settled <= day else "Disputed" if r["Disputed"] == "Yes" else ""
            invoices.append(
                {
                    **{k: r[k] for k in ("invoiceNumber", "customerID", "InvoiceAmount")},
                    **{k: r[k] for k in ("DueDate", "InvoiceDate")},
                    "client_email": f"ap+{r['customerID'].lower()}@customers.example.com",
                    "status": status,
                }
            )
        data = _plan(client, {"today": day.isoformat(), "scope": "ibm", "invoices": invoices})
        digest.update(json.dumps(data, sort_keys=True, ensure_ascii=False).encode())
    expected = (GOLDEN / "ibm-plans.sha256").read_text().split()[0]
    assert digest.hexdigest() == expected
