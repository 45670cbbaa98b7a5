"""A create whose outcome is unknown (issue 17): never a second create in the same call; the key
stays reserved, the row is `pending`, and only a call after the lease looks the draft up."""

from __future__ import annotations

import datetime as dt

from service.config import PROJECT_ROOT
from service.domain.decide import DEFAULT_STAGES, Policy
from service.domain.invoice import ParseOptions
from service.ports import AuthorizationError, DraftKey, EntryState, OutcomeUnknown
from service.rendering import RenderSettings, TemplateSet
from service.usecases.drafts import DraftOutcome, DraftSettings, generate_drafts
from service.usecases.plan import PlanSettings, plan
from tests.conftest import invoice_row
from tests.fakes import FakeLedger, FakeSink, transient

TEMPLATES = TemplateSet(PROJECT_ROOT / "templates", DEFAULT_STAGES)
PLAN = PlanSettings(Policy(), ParseOptions(), RenderSettings(sender_name="Acme"))
NOW = dt.datetime(2025, 1, 22, 9, tzinfo=dt.UTC)
KEY = DraftKey("sheet-1", "A", 7)
LEASE = dt.timedelta(seconds=60)


def draft_row(ledger: FakeLedger, sink: FakeSink, now: dt.datetime) -> DraftOutcome:
    """One call of the drafting flow for invoice A (stage 7 due) at ``now``."""
    planned = plan([invoice_row(invoice_id="A")], today=NOW.date(), settings=PLAN,
                   templates=TEMPLATES)  # fmt: skip
    result = generate_drafts(
        planned,
        scope="sheet-1",
        today=NOW.date(),
        ledger=ledger,
        sink=sink,
        settings=DraftSettings("ar@acme.example.com", "acme.example.com", lease_seconds=60),
        templates=TEMPLATES,
        clock=lambda: now,
    )
    return result.outcomes[0]


def test_a_draft_stored_without_an_answer_is_pending_then_adopted_after_the_lease() -> None:
    ledger, sink = FakeLedger(), FakeSink()
    sink.answers_lost = 1

    first = draft_row(ledger, sink, NOW)
    assert (first.action.value, first.reason.value, first.retryable) == ("skip", "pending", True)
    assert first.writeback is None
    assert ledger.entries[KEY].state is EntryState.RESERVED  # not released for a blind create

    within = draft_row(ledger, sink, NOW + LEASE / 2)
    assert within.reason.value == "duplicate" and within.retryable

    after = draft_row(ledger, sink, NOW + LEASE * 1.5)
    assert after.reason.value == "drafted" and after.adopted
    assert sink.keys() == ["sheet-1/A/7"] and sink.create_calls == 1 and sink.find_calls == 1
    assert ledger.entries[KEY].state is EntryState.CREATED


def test_an_unknown_outcome_that_stored_nothing_is_created_after_the_lease() -> None:
    ledger, sink = FakeLedger(), FakeSink()
    sink.failures.append(OutcomeUnknown("timed out", code="gmail_outcome_unknown"))

    assert draft_row(ledger, sink, NOW).reason.value == "pending"
    after = draft_row(ledger, sink, NOW + LEASE * 1.5)

    assert after.reason.value == "drafted" and not after.adopted
    assert sink.keys() == ["sheet-1/A/7"] and sink.find_calls == 1


def test_a_failed_look_after_the_lease_keeps_the_key_reserved() -> None:
    ledger, sink = FakeLedger(), FakeSink()
    sink.answers_lost = 1
    draft_row(ledger, sink, NOW)
    sink.find_failures.append(transient())

    looked = draft_row(ledger, sink, NOW + LEASE * 1.5)

    assert looked.reason.value == "pending"
    assert ledger.entries[KEY].state is EntryState.RESERVED
    again = draft_row(ledger, sink, NOW + LEASE * 3)
    assert again.reason.value == "drafted" and again.adopted
    assert sink.keys() == ["sheet-1/A/7"]


def test_lost_authorisation_while_looking_stops_the_run_and_keeps_the_key() -> None:
    ledger, sink = FakeLedger(), FakeSink()
    sink.answers_lost = 1
    draft_row(ledger, sink, NOW)
    sink.find_failures.append(AuthorizationError())

    looked = draft_row(ledger, sink, NOW + LEASE * 1.5)

    assert looked.reason.value == "gmail_unauthorized"
    assert ledger.entries[KEY].state is EntryState.RESERVED
    assert sink.create_calls == 1


def test_a_create_that_certainly_failed_still_releases_the_key() -> None:
    ledger, sink = FakeLedger(), FakeSink()
    sink.failures.append(transient())

    failed = draft_row(ledger, sink, NOW)

    assert (failed.action.value, failed.reason.value) == ("error", "draft_failed")
    assert ledger.entries[KEY].state is EntryState.FAILED
    assert draft_row(ledger, sink, NOW).reason.value == "drafted"  # no lease to wait for


def test_a_certain_failure_after_a_look_that_found_nothing_releases_the_key() -> None:
    ledger, sink = FakeLedger(), FakeSink()
    sink.failures.append(OutcomeUnknown("timed out", code="gmail_outcome_unknown"))
    draft_row(ledger, sink, NOW)
    sink.failures.append(transient())  # after the look: a 429 that outlasted the retries

    failed = draft_row(ledger, sink, NOW + LEASE * 1.5)

    assert failed.reason.value == "draft_failed" and sink.find_calls == 1
    assert ledger.entries[KEY].state is EntryState.FAILED
