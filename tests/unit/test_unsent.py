"""Drafts never sent (issue 19): no stage is drafted on top of a reminder still in Drafts."""

from __future__ import annotations

import datetime as dt

from service.config import PROJECT_ROOT
from service.domain.decide import Policy
from service.domain.invoice import ParseOptions
from service.ports import SinkError
from service.rendering import RenderSettings, TemplateSet
from service.usecases.drafts import DraftSettings, GenerateResult, generate_drafts
from service.usecases.plan import PlanSettings, plan
from service.usecases.report import outcome_row_dict
from tests.conftest import invoice_row
from tests.fakes import FakeLedger, FakeSink

TEMPLATES = TemplateSet(PROJECT_ROOT / "templates", (7, 14, 21, 28, 35, 42))
PLAN = PlanSettings(Policy(), ParseOptions(), RenderSettings())
DUE = dt.date(2025, 1, 1)


def day(ledger: FakeLedger, sink: FakeSink, today: dt.date, wait: bool = True) -> GenerateResult:
    row = invoice_row(due_date=DUE.isoformat())
    entry = ledger.latest_created("sheet", "INV-1", 100)
    if entry is not None:  # the write-back of the earlier run
        row |= {"last_stage_sent": entry.key.stage, "last_sent_at": entry.drafted_on.isoformat()}  # type: ignore[union-attr]
    planned = plan([row], today=today, settings=PLAN, templates=TEMPLATES, render=False)
    now = dt.datetime.combine(today, dt.time(9), dt.UTC)
    settings = DraftSettings("ar@acme.example.com", "acme.example.com", wait_for_unsent=wait)
    return generate_drafts(planned, scope="sheet", today=today, ledger=ledger, sink=sink,
                           settings=settings, templates=TEMPLATES, clock=lambda: now)  # fmt: skip


def test_a_reminder_left_in_drafts_holds_back_the_next_stage() -> None:
    ledger, sink = FakeLedger(), FakeSink()
    assert day(ledger, sink, DUE + dt.timedelta(7)).drafted == 1  # stage 7
    later = day(ledger, sink, DUE + dt.timedelta(17))  # stage 14 is due, 7 still unsent

    outcome = later.outcomes[0]
    assert (outcome.reason.value, later.drafted) == ("previous_unsent", 0)
    row = outcome_row_dict(outcome)
    assert row["draft_url"] == "https://x/1"
    assert row["waiting_since"] == DUE + dt.timedelta(7)
    assert outcome.writeback is None  # the sheet keeps saying what was drafted
    assert sink.in_drafts_calls == 1  # one look per invoice per call


def test_once_sent_the_next_stage_is_drafted() -> None:
    ledger, sink = FakeLedger(), FakeSink()
    day(ledger, sink, DUE + dt.timedelta(7))
    sink.send("d1")
    later = day(ledger, sink, DUE + dt.timedelta(17))
    assert later.drafted == 1 and later.outcomes[0].entry.key.stage == 14  # type: ignore[union-attr]


def test_unsent_policy_continue_drafts_on_top() -> None:
    ledger, sink = FakeLedger(), FakeSink()
    day(ledger, sink, DUE + dt.timedelta(7), wait=False)
    later = day(ledger, sink, DUE + dt.timedelta(17), wait=False)
    assert later.drafted == 1 and sink.in_drafts_calls == 0


def test_a_mailbox_that_cannot_tell_does_not_stall_reminders() -> None:
    class Unsure(FakeSink):
        def in_drafts(self, entry: object) -> bool:
            raise SinkError("Gmail unavailable", retryable=True)

    ledger, sink = FakeLedger(), Unsure()
    day(ledger, sink, DUE + dt.timedelta(7))
    assert day(ledger, sink, DUE + dt.timedelta(17)).drafted == 1
