"""The exactly-once drafting flow with fake ports: claim → create → record."""

from __future__ import annotations

import datetime as dt
from email import message_from_bytes, policy

import pytest

from service.config import PROJECT_ROOT
from service.domain.decide import DEFAULT_STAGES, Policy
from service.domain.invoice import ParseOptions
from service.ports import AuthorizationError, DraftKey, EntryState
from service.rendering import RenderSettings, TemplateSet
from service.usecases.drafts import DraftSettings, GenerateResult, generate_drafts
from service.usecases.plan import PlanSettings, plan
from tests.conftest import invoice_row
from tests.fakes import FakeLedger, FakeSink, transient

TEMPLATES = TemplateSet(PROJECT_ROOT / "templates", DEFAULT_STAGES)
PLAN = PlanSettings(Policy(), ParseOptions(), RenderSettings(sender_name="Acme"))
NOW = dt.datetime(2025, 1, 22, 9, tzinfo=dt.UTC)
TODAY = NOW.date()


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> dt.datetime:
        return self.now


def run(
    rows: list[dict[str, object]],
    ledger: FakeLedger,
    sink: FakeSink,
    *,
    today: dt.date = TODAY,
    clock: Clock | None = None,
    threads: bool = False,
    request_key: str | None = None,
) -> GenerateResult:
    planned = plan(rows, today=today, settings=PLAN, templates=TEMPLATES)
    return generate_drafts(
        planned,
        scope="sheet-1",
        today=today,
        ledger=ledger,
        sink=sink,
        settings=DraftSettings(
            "Acme AR <ar@acme.example.com>",
            "acme.example.com",
            render=PLAN.render,
            lease_seconds=60,
            thread_followups=threads,
        ),
        templates=TEMPLATES,
        clock=clock or Clock(),
        request_key=request_key,
    )


ROWS = [
    invoice_row(invoice_id="A"),
    invoice_row(invoice_id="B", due_date="2025-01-01"),
    invoice_row(invoice_id="C", status="Paid"),
]


def test_each_due_row_gets_one_draft_and_a_writeback() -> None:
    ledger, sink = FakeLedger(), FakeSink()
    result = run(ROWS, ledger, sink)
    assert sink.keys() == ["sheet-1/A/7", "sheet-1/B/21"]
    assert [o.reason.value for o in result.outcomes] == ["drafted", "drafted", "closed_status"]
    wb = result.outcomes[0].writeback
    assert wb is not None and (wb.row, wb.last_stage_sent, wb.last_sent_at) == (2, 7, TODAY)
    assert "Drafted stage 7" in wb.reminder_status
    assert result.outcomes[2].writeback is None


def test_a_second_identical_call_drafts_nothing_and_reports_duplicates_with_ids() -> None:
    ledger, sink = FakeLedger(), FakeSink()
    run(ROWS, ledger, sink)
    again = run(ROWS, ledger, sink)
    assert len(sink.drafts) == 2
    assert [o.reason.value for o in again.outcomes[:2]] == ["duplicate", "duplicate"]
    assert again.outcomes[0].entry is not None and again.outcomes[0].entry.draft_id == "d1"
    assert again.outcomes[0].writeback is not None  # the client can still write back


def test_replay_with_the_same_idempotency_key_answers_as_the_first_call() -> None:
    ledger, sink = FakeLedger(), FakeSink()
    first = run(ROWS, ledger, sink, request_key="req-1")
    replay = run(ROWS, ledger, sink, request_key="req-1")
    assert [o.reason for o in replay.outcomes] == [o.reason for o in first.outcomes]
    assert len(sink.drafts) == 2


def test_failed_create_is_retryable_and_the_next_run_creates_it_once() -> None:
    ledger, sink = FakeLedger(), FakeSink()
    sink.failures.append(transient())
    result = run(ROWS, ledger, sink)
    assert [(o.reason.value, o.retryable) for o in result.outcomes[:2]] == [
        ("draft_failed", True),
        ("drafted", None),
    ]
    assert ledger.entries[DraftKey("sheet-1", "A", 7)].state is EntryState.FAILED
    assert result.outcomes[0].writeback is None
    again = run(ROWS, ledger, sink)
    assert [o.reason.value for o in again.outcomes[:2]] == ["drafted", "duplicate"]
    assert sorted(sink.keys()) == ["sheet-1/A/7", "sheet-1/B/21"]


def test_reservation_left_by_a_crash_is_adopted_not_duplicated() -> None:
    ledger, sink = FakeLedger(), FakeSink()
    clock = Clock()
    # A crashed worker: claimed A and created its draft, died before recording it.
    [claim] = ledger.claim_all([DraftKey("sheet-1", "A", 7)], now=clock.now, lease_seconds=60)
    assert claim.outcome.value == "claimed"
    planned = plan(ROWS[:1], today=TODAY, settings=PLAN, templates=TEMPLATES)
    from service.usecases.drafts import _build, _Run  # the same message the crashed worker built

    run_ctx = _Run(
        "sheet-1",
        TODAY,
        ledger,
        sink,
        DraftSettings("ar@acme.example.com", "acme.example.com"),
        TEMPLATES,
        clock,
        None,
    )
    key = DraftKey("sheet-1", "A", 7)
    assert planned[0].email is not None
    sink.create(_build(run_ctx, planned[0], key, planned[0].email, None))
    # Within the lease, another caller sees it busy; after it, the key is recovered.
    busy = run(ROWS[:1], ledger, sink, clock=clock)
    assert busy.outcomes[0].reason.value == "duplicate" and busy.outcomes[0].retryable
    clock.now = NOW + dt.timedelta(seconds=61)
    recovered = run(ROWS[:1], ledger, sink, clock=clock)
    assert recovered.outcomes[0].reason.value == "drafted" and recovered.outcomes[0].adopted
    assert sink.keys() == ["sheet-1/A/7"] and sink.find_calls == 1


def test_crash_before_create_is_created_on_recovery() -> None:
    ledger, sink = FakeLedger(), FakeSink()
    ledger.claim_all(
        [DraftKey("sheet-1", "A", 7)], now=NOW - dt.timedelta(hours=1), lease_seconds=60
    )
    result = run(ROWS[:1], ledger, sink)
    assert result.outcomes[0].reason.value == "drafted" and not result.outcomes[0].adopted
    assert sink.keys() == ["sheet-1/A/7"]


def test_authorization_failure_stops_the_run_and_leaves_rows_retryable() -> None:
    ledger, sink = FakeLedger(), FakeSink()
    sink.failures.append(AuthorizationError())
    result = run(ROWS, ledger, sink)
    assert result.stopped == "gmail_unauthorized"
    assert [o.reason.value for o in result.outcomes] == [
        "gmail_unauthorized",
        "gmail_unauthorized",
        "closed_status",
    ]
    assert sink.create_calls == 1  # B was never attempted
    assert ledger.entries[DraftKey("sheet-1", "A", 7)].state is EntryState.FAILED


def test_header_injection_makes_the_row_an_error_and_others_go_on() -> None:
    ledger, sink = FakeLedger(), FakeSink()
    bad = invoice_row(invoice_id="X\nBcc: evil@example.com")
    result = run([bad, invoice_row(invoice_id="OK")], ledger, sink)
    assert [(o.action.value, o.reason.value) for o in result.outcomes] == [
        ("error", "draft_failed"),
        ("draft", "drafted"),
    ]
    assert result.outcomes[0].retryable is False
    assert sink.keys() == ["sheet-1/OK/7"]


def test_later_stage_goes_in_the_same_thread_when_threading_is_on() -> None:
    ledger, sink = FakeLedger(), FakeSink()
    run([invoice_row()], ledger, sink, threads=True)
    later = TODAY + dt.timedelta(days=7)
    run(
        [invoice_row(last_stage_sent=7, last_sent_at=TODAY.isoformat())],
        ledger,
        sink,
        today=later,
        threads=True,
    )
    first, second = sink.drafts
    assert second.thread is not None and second.thread.thread_id == "t1"
    msg = message_from_bytes(second.raw, policy=policy.default)
    assert msg["In-Reply-To"] == first.rfc_message_id
    assert msg["Subject"] == f"Re: {first.subject}"


def test_without_threading_each_stage_keeps_its_own_subject() -> None:
    ledger, sink = FakeLedger(), FakeSink()
    run([invoice_row()], ledger, sink)
    run(
        [invoice_row(last_stage_sent=7, last_sent_at=TODAY.isoformat())],
        ledger,
        sink,
        today=TODAY + dt.timedelta(days=7),
    )
    _first, second = sink.drafts
    assert second.thread is None and not second.subject.startswith("Re:")
    assert message_from_bytes(second.raw, policy=policy.default)["In-Reply-To"] is None


@pytest.mark.parametrize("stage_days", [7, 14, 21, 28, 35, 42])
def test_every_draft_parses_with_expected_headers(stage_days: int) -> None:
    ledger, sink = FakeLedger(), FakeSink()
    due = (TODAY - dt.timedelta(days=stage_days)).isoformat()
    run([invoice_row(due_date=due, client_email="a@x.example.com; b@y.example.com")], ledger, sink)
    msg = message_from_bytes(sink.drafts[0].raw, policy=policy.default)
    assert msg["X-Invoice-Collector-Key"] == f"sheet-1/INV-1/{stage_days}"
    assert msg["To"] == "a@x.example.com, b@y.example.com"
    assert msg["From"] == "Acme AR <ar@acme.example.com>"
    assert "INV-1" in msg["Subject"]
    assert "Ann Client" in msg.get_body(("plain",)).get_content()


def test_a_call_stops_starting_drafts_when_its_time_budget_runs_out() -> None:
    ledger, sink = FakeLedger(), FakeSink()
    ticks = iter(range(100))  # each look at the timer is one second later
    rows = [invoice_row(invoice_id=f"T-{n}") for n in range(5)]
    planned = plan(rows, today=TODAY, settings=PLAN, templates=TEMPLATES)
    settings = DraftSettings(
        "ar@acme.example.com", "acme.example.com", render=PLAN.render, time_budget_seconds=2.5
    )
    result = generate_drafts(
        planned, scope="sheet-1", today=TODAY, ledger=ledger, sink=sink, settings=settings,
        templates=TEMPLATES, clock=Clock(), timer=lambda: float(next(ticks)),
    )  # fmt: skip
    assert [o.reason.value for o in result.outcomes] == ["drafted"] * 2 + ["time_budget"] * 3
    assert (result.drafted, result.remaining) == (2, 3)
    # The next call, with the same rows, finishes them; the first two are duplicates.
    again = run(rows, ledger, sink)
    assert [o.reason.value for o in again.outcomes] == ["duplicate"] * 2 + ["drafted"] * 3
    assert len(sink.drafts) == 5
