"""The worked example in docs/policy.md is what the decision does, day by day."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import holidays

from service.config import PROJECT_ROOT
from service.domain.calendar import BusinessCalendar
from service.domain.decide import Action, Policy, Reason, decide
from service.domain.invoice import Invoice

DOC = PROJECT_ROOT / "docs" / "policy.md"
START, END = "<!-- worked-example -->", "<!-- /worked-example -->"


def worked_example() -> str:
    """One invoice, due Thu 13 Nov 2025, stages -3,7…42, US business days; on Mon 1 Dec the
    client promises to pay by Fri 5 Dec, and does not. A run each day, written back."""
    us = holidays.country_holidays("US", years=[2025, 2026])
    policy = Policy(stages=(-3, 7, 14, 21, 28, 35, 42), calendar=BusinessCalendar(holidays=us))
    invoice = Invoice("INV-7", "Ann", ("ann@example.com",), Decimal(500), "USD",
                      dt.date(2025, 11, 13))  # fmt: skip
    lines = ["| day | days overdue | what the run does |", "|---|---:|---|"]
    day = dt.date(2025, 11, 8)
    while day <= dt.date(2026, 1, 2):
        if day == dt.date(2025, 12, 1):  # the bookkeeper writes the promise in the sheet
            invoice = dataclasses.replace(invoice, promised_date=dt.date(2025, 12, 5))
        d = decide(invoice, day, policy)
        note = ""
        if d.action is Action.DRAFT:
            note = f"**drafts stage {d.stage}**"
            invoice = dataclasses.replace(invoice, last_stage_sent=d.stage, last_sent_at=day)
        elif d.reason is Reason.NOT_BUSINESS_DAY:
            why = us.get(day) or "weekend"
            note = f"stage {d.stage} waits: {why}; drafted {d.draft_on:%a %d %b}"
        elif d.reason is Reason.PROMISED and (d.stage or 0) > (invoice.last_stage_sent or 0):
            note = f"stage {d.stage} waits: promised to pay by Fri 05 Dec (+1 day grace)"
        if note:
            lines.append(f"| {day:%a %d %b %Y} | {d.days_overdue} | {note} |")
        day += dt.timedelta(days=1)
    return "\n".join(lines)


def test_the_worked_example_in_the_docs_is_what_the_code_does() -> None:
    text = DOC.read_text(encoding="utf-8")
    table = text.split(START, 1)[1].split(END, 1)[0].strip()
    assert table == worked_example(), "regenerate the table: python -m tests.unit.test_policy_doc"


if __name__ == "__main__":
    print(worked_example())
