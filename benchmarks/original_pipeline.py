"""A faithful re-implementation of the original design's pipeline (ORIGINAL_DESIGN §5–9).

pandas DataFrame from the Sheets values, `pd.to_numeric`/`pd.to_datetime`, `iterrows`, the
router, and one template file read and rendered with `string.Template` per invoice — as the
document's code does (including its rendering bug: `{{name}}` is not a `string.Template`
placeholder, so merge fields stay unreplaced; the cost is the same). `plan_throughput.py`
calls `run_daily` on the rows it sends the API, in turn with each request.
"""

from __future__ import annotations

import re
from datetime import date
from string import Template

import pandas as pd

STAGES = [7, 14, 21, 28, 35, 42]


def days_overdue(due_date: date, today: date) -> int:
    return max(0, (today - due_date).days)


def stage_for(days: int) -> int | None:
    eligible = [s for s in STAGES if days >= s]
    return max(eligible) if eligible else None


def should_send(stage, last_stage_sent, last_sent_at, today) -> bool:  # type: ignore[no-untyped-def]
    if stage is None:
        return False
    if last_sent_at == today:
        return False
    if last_stage_sent is None:
        return True
    return stage > last_stage_sent


def render_template(path: str, ctx: dict[str, str]) -> tuple[str, str]:
    with open(path, encoding="utf-8") as f:
        raw = f.read()
    m = re.match(r"Subject:\s*(.*)\n\n(.*)", raw, flags=re.S)
    assert m is not None
    subject = Template(m.group(1)).safe_substitute(ctx)
    body = Template(m.group(2)).safe_substitute(ctx)
    return subject, body


def read_invoices(values: list[list[str]]) -> list[dict[str, object]]:
    headers = values[0]
    rows = values[1:]
    df = pd.DataFrame(rows, columns=headers)
    df["amount"] = pd.to_numeric(df["amount"], errors="coerce").fillna(0.0)
    df["due_date"] = pd.to_datetime(df["due_date"]).dt.date
    df["sent_date"] = pd.to_datetime(df["sent_date"]).dt.date
    df["last_stage_sent"] = pd.to_numeric(df["last_stage_sent"], errors="coerce")
    df["last_sent_at"] = pd.to_datetime(df["last_sent_at"], errors="coerce").dt.date
    invoices = []
    for _, r in df.iterrows():
        invoices.append(
            {
                "invoice_id": str(r.get("invoice_id", "")).strip(),
                "client_name": str(r.get("client_name", "")).strip(),
                "client_email": str(r.get("client_email", "")).strip(),
                "amount": float(r.get("amount", 0.0)),
                "currency": str(r.get("currency", "USD")).strip(),
                "due_date": r.get("due_date"),
                "sent_date": r.get("sent_date"),
                "status": str(r.get("status", "")).strip(),
                "notes": str(r.get("notes", "")) if not pd.isna(r.get("notes")) else "",
                "last_stage_sent": int(r.get("last_stage_sent"))
                if pd.notna(r.get("last_stage_sent"))
                else None,
                "last_sent_at": r.get("last_sent_at") if pd.notna(r.get("last_sent_at")) else None,
            }
        )
    return invoices


def run_daily(values: list[list[str]], templates: str, today: date) -> list[tuple[object, ...]]:
    invoices = read_invoices(values)
    created = []
    for inv in invoices:
        if str(inv["status"]).lower() != "overdue":
            continue
        d = days_overdue(inv["due_date"], today)  # type: ignore[arg-type]
        stage = stage_for(d)
        if not should_send(stage, inv["last_stage_sent"], inv["last_sent_at"], today):
            continue
        ctx = {
            "name": inv["client_name"],
            "amount": "{:,.2f}".format(inv["amount"]),
            "currency": inv["currency"],
            "invoice_id": inv["invoice_id"],
            "due_date": inv["due_date"].strftime("%b %d, %Y"),  # type: ignore[union-attr]
        }
        subject, _body = render_template(f"{templates}/stage_{stage:02d}.txt", ctx)  # DRY_RUN
        created.append((inv["invoice_id"], stage, inv["client_email"], subject))
    return created
