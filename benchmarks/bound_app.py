"""A practical bound on plan throughput: the least a plan server can do, in one fused loop.

It reads the benchmark's rows (every header present, ISO dates, plain amounts), computes days
overdue and the stage, and renders the shipped templates (their `{% if %}` blocks dropped) with
one `%` format per draft — and nothing else: no validation, no error rows, no closed statuses,
partial payments or reminder history, no summary by reason. Its output has the API's row
shape. It is not a product; it shows how far the API's throughput is from what CPython, Flask
and gunicorn allow on this machine. Run: ``gunicorn 'benchmarks.bound_app:create_app()'``.
"""

from __future__ import annotations

import datetime as dt
import re
from bisect import bisect_right
from collections import Counter
from decimal import Decimal
from operator import itemgetter
from pathlib import Path

import orjson
from flask import Flask, Response, request

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
STAGES = [7, 14, 21, 28, 35, 42]


def _as_format(path: Path) -> tuple[str, str]:
    text = re.sub(r"{%.*?%}.*?{% endif %}", "", path.read_text(encoding="utf-8"), flags=re.S)
    text = text.replace("%", "%%")
    text = re.sub(r"{{\s*(\w+)\s*}}", r"%(\1)s", text)
    subject, _, body = text.partition("\n\n")
    return subject.removeprefix("Subject:").strip(), body


def create_app() -> Flask:
    app = Flask(__name__)
    formats = {s: _as_format(TEMPLATES / f"stage_{s:02d}.txt") for s in STAGES}

    @app.get("/healthz")
    def healthz() -> Response:
        return Response(b'{"status": "ok"}', mimetype="application/json")

    @app.post("/v1/plan")
    def plan() -> Response:
        payload = orjson.loads(request.get_data())
        today = dt.date.fromisoformat(payload["today"])
        rows = payload["invoices"]
        ids, names, emails, amounts, dues, statuses = (
            list(map(itemgetter(h), rows))
            for h in ("invoice_id", "client_name", "client_email", "amount", "due_date", "status")
        )
        due_dates = {d: dt.date.fromisoformat(d) for d in set(dues)}
        due_text = {d: f"{v:%b} {v.day}, {v.year}" for d, v in due_dates.items()}
        out = []
        for i, (iid, name, email, amount, due, status) in enumerate(
            zip(ids, names, emails, amounts, dues, statuses, strict=True)
        ):
            days = max(0, (today - due_dates[due]).days)
            reached = bisect_right(STAGES, days)
            stage = STAGES[reached - 1] if reached else None
            draft = stage is not None and status == "Overdue"
            money = "$" + format(Decimal(amount), ",.2f")
            row = {
                "row": i + 2,
                "invoice_id": iid,
                "days_overdue": days,
                "stage": stage,
                "action": "draft" if draft else "skip",
                "reason": "due" if draft else "not_due",
                "client_name": name,
                "to": [email],
                "currency": "USD",
                "balance": amount,
                "amount_formatted": money,
            }
            if draft:
                subject, body = formats[stage]  # type: ignore[index]
                fields = {
                    "name": name,
                    "invoice_id": iid,
                    "amount_formatted": money,
                    "balance_formatted": money,
                    "due_date": due_text[due],
                    "days_overdue": days,
                    "sender_name": "The accounts team",
                }
                row["subject"] = subject % fields
                row["body"] = body % fields
            out.append(row)
        summary = Counter(map(itemgetter("action"), out))
        return Response(
            orjson.dumps({"summary": {"draft": summary["draft"]}, "rows": out}),
            mimetype="application/json",
        )

    return app
