"""The Ledger contract (DESIGN §7): the same scenarios on the fake, SQLite and PostgreSQL.

Unit tests trust FakeLedger to behave as SqlLedger does; these scenarios are what holds the
two to one set of rules. PostgreSQL runs in a fresh schema per test (conftest's
``pg_schema_url``); without TEST_DATABASE_URL it is skipped loudly, or fails under CI=true.
Races across threads and processes, migrations and the schema stay in test_ledger_sql.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.adapters.ledger_sql import SqlLedger
from service.adapters.migrate import upgrade
from service.ports import Claim, ClaimOutcome, CreatedDraft, DraftKey, EntryState, Ledger
from tests.fakes import FakeLedger

pytestmark = pytest.mark.timeout(60)

NOW = dt.datetime(2025, 1, 22, 9, 0, tzinfo=dt.UTC)
LEASE = 300.0
KEY = DraftKey("sheet-abc", "INV-001", 14)


def _created(n: int = 1) -> CreatedDraft:
    return CreatedDraft(
        draft_id=f"r-draft-{n}",
        message_id=f"msg-{n}",
        thread_id=f"thread-{n}",
        rfc_message_id=f"<ic.{n}@example.com>",
        url=f"https://mail.google.com/mail/#drafts/{n}",
    )


def _at(seconds: float) -> dt.datetime:
    return NOW + dt.timedelta(seconds=seconds)


def claim_one(
    ledger: Ledger,
    key: DraftKey,
    *,
    now: dt.datetime,
    lease_seconds: float,
    request_key: str | None = None,
) -> Claim:
    """One key claimed on its own: a statement of one (the port claims through claim_all)."""
    [claim] = ledger.claim_all([key], now=now, lease_seconds=lease_seconds, request_key=request_key)
    return claim


@pytest.fixture(
    params=["fake", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    """An empty ledger: the in-memory fake, a SQLite file, or a throw-away PostgreSQL schema."""
    if request.param == "fake":
        yield FakeLedger()
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    else:
        url = request.getfixturevalue("pg_schema_url")
    upgrade(url)
    sql = SqlLedger(url)
    try:
        yield sql
    finally:
        sql.engine.dispose()


# ---------------------------------------------------------------------------------------------
# Claiming
# ---------------------------------------------------------------------------------------------
def test_first_claim_reserves_the_key_with_a_lease(ledger: Ledger) -> None:
    claim = claim_one(ledger, KEY, now=NOW, lease_seconds=LEASE, request_key="req-1")

    assert claim.outcome is ClaimOutcome.CLAIMED
    assert not claim.recovered
    entry = claim.entry
    assert (entry.key, entry.state) == (KEY, EntryState.RESERVED)
    assert (entry.reserved_at, entry.lease_until) == (NOW, _at(LEASE))
    assert (entry.request_key, entry.attempts, entry.draft_id) == ("req-1", 0, None)
    assert ledger.get(KEY) == entry
    assert ledger.get(DraftKey(KEY.scope, KEY.invoice_id, 7)) is None


def test_second_claim_is_busy_while_the_lease_lasts_even_at_its_last_instant(
    ledger: Ledger,
) -> None:
    claim_one(ledger, KEY, now=NOW, lease_seconds=60)

    soon = claim_one(ledger, KEY, now=_at(5), lease_seconds=LEASE)
    at_the_end = claim_one(ledger, KEY, now=_at(60), lease_seconds=LEASE)

    assert soon.outcome is ClaimOutcome.BUSY
    assert at_the_end.outcome is ClaimOutcome.BUSY
    assert at_the_end.entry.reserved_at == NOW  # the holder's reservation, untouched


def test_expired_reservation_is_recovered_by_exactly_one_later_claim(ledger: Ledger) -> None:
    claim_one(ledger, KEY, now=NOW, lease_seconds=60, request_key="crashed")
    after_crash = _at(60.001)

    recovered = claim_one(ledger, KEY, now=after_crash, lease_seconds=LEASE, request_key="req-2")
    second = claim_one(ledger, KEY, now=after_crash, lease_seconds=LEASE)

    assert recovered.outcome is ClaimOutcome.CLAIMED
    assert recovered.recovered  # the new holder must look for the crashed holder's draft
    assert recovered.entry.state is EntryState.RESERVED
    assert recovered.entry.reserved_at == after_crash
    assert recovered.entry.lease_until == after_crash + dt.timedelta(seconds=LEASE)
    assert recovered.entry.request_key == "req-2"
    assert second.outcome is ClaimOutcome.BUSY


def test_claim_after_record_created_answers_created_with_the_draft_ids(ledger: Ledger) -> None:
    claim_one(ledger, KEY, now=NOW, lease_seconds=LEASE)
    stored = ledger.record_created(KEY, _created(), drafted_on=NOW.date(), now=_at(1))

    later = claim_one(ledger, KEY, now=NOW + dt.timedelta(days=30), lease_seconds=LEASE)

    assert stored.state is EntryState.CREATED
    assert later.outcome is ClaimOutcome.CREATED
    assert not later.recovered
    entry = later.entry
    assert (entry.draft_id, entry.message_id, entry.thread_id) == ("r-draft-1", "msg-1", "thread-1")
    assert entry.rfc_message_id == "<ic.1@example.com>"
    assert entry.draft_url == "https://mail.google.com/mail/#drafts/1"
    assert entry.drafted_on == NOW.date()
    assert entry.error is None
    assert ledger.get(KEY) == entry == stored


def test_failed_key_is_claimable_again_and_counts_attempts(ledger: Ledger) -> None:
    claim_one(ledger, KEY, now=NOW, lease_seconds=LEASE)
    failed = ledger.record_failed(KEY, "gmail 400 invalidArgument", now=_at(1))

    retry = claim_one(ledger, KEY, now=_at(2), lease_seconds=LEASE)

    assert (failed.state, failed.attempts) == (EntryState.FAILED, 1)
    assert failed.error == "gmail 400 invalidArgument"
    assert retry.outcome is ClaimOutcome.CLAIMED
    assert not retry.recovered  # a failure certainly made no draft: nothing to look for
    assert (retry.entry.state, retry.entry.attempts) == (EntryState.RESERVED, 1)
    assert retry.entry.lease_until == _at(2 + LEASE)
    assert claim_one(ledger, KEY, now=_at(3), lease_seconds=LEASE).outcome is ClaimOutcome.BUSY

    again = ledger.record_failed(KEY, "gmail 400 again", now=_at(4))
    assert (again.state, again.attempts, again.error) == (EntryState.FAILED, 2, "gmail 400 again")


def test_only_a_live_reservation_can_fail(ledger: Ledger) -> None:
    claim_one(ledger, KEY, now=NOW, lease_seconds=LEASE)
    first = ledger.record_failed(KEY, "first failure", now=_at(1))

    second = ledger.record_failed(KEY, "a stale worker's failure", now=_at(2))

    assert second == first
    assert (second.attempts, second.error) == (1, "first failure")


def test_long_error_text_is_cut_to_a_thousand_characters(ledger: Ledger) -> None:
    claim_one(ledger, KEY, now=NOW, lease_seconds=LEASE)

    entry = ledger.record_failed(KEY, "x" * 10_000, now=NOW)

    assert entry.error == "x" * 1_000


def test_a_failure_never_downgrades_a_created_draft(ledger: Ledger) -> None:
    claim_one(ledger, KEY, now=NOW, lease_seconds=LEASE)
    created = ledger.record_created(KEY, _created(), drafted_on=NOW.date(), now=NOW)

    entry = ledger.record_failed(KEY, "late timeout from a stale worker", now=_at(1))

    assert entry == created
    assert (entry.state, entry.attempts, entry.error) == (EntryState.CREATED, 0, None)
    assert ledger.get(KEY) == created
    later = claim_one(ledger, KEY, now=_at(2), lease_seconds=LEASE)
    assert later.outcome is ClaimOutcome.CREATED
    assert later.entry.draft_id == "r-draft-1"


def test_the_first_recorded_draft_wins_when_recorded_twice(ledger: Ledger) -> None:
    claim_one(ledger, KEY, now=NOW, lease_seconds=LEASE)
    first = ledger.record_created(KEY, _created(1), drafted_on=NOW.date(), now=NOW)

    second = ledger.record_created(
        KEY, _created(2), drafted_on=NOW.date() + dt.timedelta(days=1), now=_at(1)
    )

    assert second == first  # the caller compares draft ids to notice its duplicate
    assert (second.draft_id, second.thread_id, second.drafted_on) == (
        "r-draft-1",
        "thread-1",
        NOW.date(),
    )
    assert ledger.get(KEY) == first


def test_a_created_entry_keeps_the_first_drafts_subject_and_recipients(ledger: Ledger) -> None:
    claim_one(ledger, KEY, now=NOW, lease_seconds=LEASE)
    first = ledger.record_created(
        KEY,
        _created(1),
        drafted_on=NOW.date(),
        now=NOW,
        subject="Invoice INV-001: second reminder",
        recipients=["ap@client.example.com", "cfo@client.example.com"],
    )

    second = ledger.record_created(
        KEY, _created(2), drafted_on=NOW.date(), now=_at(1), subject="other", recipients=["x@y.z"]
    )

    assert first.subject == second.subject == "Invoice INV-001: second reminder"
    assert first.recipients == second.recipients
    assert second.recipients == ("ap@client.example.com", "cfo@client.example.com")


def test_a_slow_success_after_its_key_was_marked_failed_is_recorded(ledger: Ledger) -> None:
    # The holder's create timed out, the key was released, then the draft turned out to exist.
    claim_one(ledger, KEY, now=NOW, lease_seconds=LEASE)
    ledger.record_failed(KEY, "timeout", now=_at(1))

    entry = ledger.record_created(KEY, _created(), drafted_on=NOW.date(), now=_at(2))

    assert (entry.state, entry.draft_id, entry.error) == (EntryState.CREATED, "r-draft-1", None)
    assert claim_one(ledger, KEY, now=_at(3), lease_seconds=LEASE).outcome is ClaimOutcome.CREATED


def test_recording_an_unclaimed_key_is_an_error(ledger: Ledger) -> None:
    with pytest.raises(LookupError):
        ledger.record_created(KEY, _created(), drafted_on=NOW.date(), now=NOW)
    with pytest.raises(LookupError):
        ledger.record_failed(KEY, "boom", now=NOW)
    assert ledger.get(KEY) is None


# ---------------------------------------------------------------------------------------------
# Replays, threads of follow-ups, times
# ---------------------------------------------------------------------------------------------
def test_a_created_entry_names_the_request_that_drafted_it(ledger: Ledger) -> None:
    # A replay of the same Idempotency-Key compares it with entry.request_key (use case side).
    claim_one(ledger, KEY, now=NOW, lease_seconds=LEASE, request_key="req-1")
    ledger.record_failed(KEY, "gmail 400", now=NOW)
    claim_one(ledger, KEY, now=_at(1), lease_seconds=LEASE, request_key="req-2")
    ledger.record_created(KEY, _created(), drafted_on=NOW.date(), now=_at(2))

    replay = claim_one(ledger, KEY, now=_at(3), lease_seconds=LEASE, request_key="req-2")
    other = claim_one(ledger, KEY, now=_at(4), lease_seconds=LEASE, request_key="req-3")
    anonymous = claim_one(ledger, KEY, now=_at(5), lease_seconds=LEASE)

    for claim in (replay, other, anonymous):
        assert claim.outcome is ClaimOutcome.CREATED
        assert claim.entry.request_key == "req-2"  # a later claim never rewrites it
        assert claim.entry.draft_id == "r-draft-1"


def test_latest_created_is_the_highest_drafted_stage_below(ledger: Ledger) -> None:
    for stage in (7, 14, 21):
        key = DraftKey(KEY.scope, KEY.invoice_id, stage)
        claim_one(ledger, key, now=NOW, lease_seconds=LEASE)
        if stage != 21:
            ledger.record_created(key, _created(stage), drafted_on=NOW.date(), now=NOW)
    claim_one(ledger, DraftKey("other-sheet", KEY.invoice_id, 14), now=NOW, lease_seconds=LEASE)
    claim_one(ledger, DraftKey(KEY.scope, "INV-OTHER", 7), now=NOW, lease_seconds=LEASE)
    ledger.record_created(
        DraftKey(KEY.scope, "INV-OTHER", 7), _created(99), drafted_on=NOW.date(), now=NOW
    )

    latest = ledger.latest_created(KEY.scope, KEY.invoice_id, below_stage=28)
    earlier = ledger.latest_created(KEY.scope, KEY.invoice_id, below_stage=14)

    assert latest is not None
    assert (latest.key.stage, latest.draft_id) == (14, "r-draft-14")  # 21 is only reserved
    assert earlier is not None
    assert (earlier.key.stage, earlier.draft_id) == (7, "r-draft-7")
    assert ledger.latest_created(KEY.scope, KEY.invoice_id, below_stage=7) is None
    assert ledger.latest_created("other-sheet", KEY.invoice_id, below_stage=42) is None
    assert ledger.latest_created(KEY.scope, "INV-NONE", below_stage=42) is None


def test_naive_times_are_refused_and_change_nothing(ledger: Ledger) -> None:
    naive = NOW.replace(tzinfo=None)
    with pytest.raises(ValueError, match="timezone-aware"):
        claim_one(ledger, KEY, now=naive, lease_seconds=LEASE)
    assert ledger.get(KEY) is None

    claim_one(ledger, KEY, now=NOW, lease_seconds=LEASE)
    with pytest.raises(ValueError, match="timezone-aware"):
        ledger.record_created(KEY, _created(), drafted_on=NOW.date(), now=naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        ledger.record_failed(KEY, "boom", now=naive)
    entry = ledger.get(KEY)
    assert entry is not None
    assert (entry.state, entry.attempts) == (EntryState.RESERVED, 0)


@pytest.mark.parametrize("lease_seconds", [0, -1.0])
def test_a_lease_must_be_positive(ledger: Ledger, lease_seconds: float) -> None:
    with pytest.raises(ValueError, match="lease_seconds"):
        claim_one(ledger, KEY, now=NOW, lease_seconds=lease_seconds)
    assert ledger.get(KEY) is None


def test_times_come_back_in_utc_whatever_zone_went_in(ledger: Ledger) -> None:
    paris = dt.timezone(dt.timedelta(hours=1))

    claimed = claim_one(ledger, KEY, now=NOW.astimezone(paris), lease_seconds=LEASE)

    stored = ledger.get(KEY)
    assert stored is not None
    for entry in (claimed.entry, stored):
        assert entry.reserved_at == NOW
        assert entry.reserved_at.utcoffset() == dt.timedelta(0)
        assert entry.lease_until.utcoffset() == dt.timedelta(0)


# ---------------------------------------------------------------------------------------------
# A statement's keys: all claimed in one transaction, or none
# ---------------------------------------------------------------------------------------------
STATEMENT = [DraftKey("sheet-abc", f"INV-{n}", 14) for n in (3, 1, 2)]


def test_a_statements_keys_are_all_claimed_together(ledger: Ledger) -> None:
    claims = ledger.claim_all(STATEMENT, now=NOW, lease_seconds=LEASE)

    assert [c.outcome for c in claims] == [ClaimOutcome.CLAIMED] * 3
    assert [c.entry.key for c in claims] == STATEMENT  # in the order asked
    again = ledger.claim_all(STATEMENT, now=_at(1), lease_seconds=LEASE)
    assert [c.outcome for c in again] == [ClaimOutcome.BUSY] * 3


def test_one_drafted_key_claims_none_of_the_statement(ledger: Ledger) -> None:
    claim_one(ledger, STATEMENT[1], now=NOW, lease_seconds=LEASE)
    ledger.record_created(STATEMENT[1], _created(), drafted_on=NOW.date(), now=_at(1))

    claims = ledger.claim_all(STATEMENT, now=_at(2), lease_seconds=LEASE)

    assert [c.outcome for c in claims] == [
        ClaimOutcome.BUSY,
        ClaimOutcome.CREATED,
        ClaimOutcome.BUSY,
    ]
    # Nothing was left reserved: each free key can still be claimed on its own.
    assert ledger.get(STATEMENT[0]) is None and ledger.get(STATEMENT[2]) is None
    alone = claim_one(ledger, STATEMENT[0], now=_at(3), lease_seconds=LEASE)
    assert alone.outcome is ClaimOutcome.CLAIMED
