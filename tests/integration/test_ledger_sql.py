"""The SQL ledger, runs and payment links against SQLite (a temp file) and real PostgreSQL.

PostgreSQL cases need ``TEST_DATABASE_URL`` (e.g.
``postgresql+psycopg://postgres@127.0.0.1:5432/test``); each test gets its own schema, dropped
afterwards, so parallel runs do not collide.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import random
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from service.adapters.ledger_sql import SqlLedger, make_engine, metadata, normalize_url
from service.adapters.migrate import current_revision, head_revision, upgrade
from service.adapters.runs_sql import PaymentLink, RunState, SqlPaymentLinks, SqlRuns
from service.ports import ClaimOutcome, CreatedDraft, DraftKey, EntryState

pytestmark = pytest.mark.timeout(60)  # a hang (lock, deadlock) fails fast, not at 300 s

PG_ENV = "TEST_DATABASE_URL"
NOW = dt.datetime(2025, 1, 22, 9, 0, tzinfo=dt.UTC)
LEASE = 300.0
KEY = DraftKey("sheet-abc", "INV-001", 14)
RACE_KEYS = 200
TIMEOUT = 45  # below the test timeout, so our own wait fails first, with a message


def _created(n: int = 1) -> CreatedDraft:
    return CreatedDraft(
        draft_id=f"r-draft-{n}",
        message_id=f"msg-{n}",
        thread_id=f"thread-{n}",
        rfc_message_id=f"<ic.{n}@example.com>",
        url=f"https://mail.google.com/mail/#drafts/{n}",
    )


# ---------------------------------------------------------------------------------------------
# Fixtures: one fresh database per test, on each backend
# ---------------------------------------------------------------------------------------------
def _postgres_schema_url() -> Iterator[str]:
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(
            f"PostgreSQL NOT TESTED: set {PG_ENV} "
            "(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test) to run the ledger on it"
        )
    schema = f"ic_test_{uuid.uuid4().hex[:12]}"
    admin = make_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    # search_path in the connection options puts every table (and alembic_version) in the
    # test's own schema without the code under test knowing about schemas.
    url = normalize_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """An empty database: a SQLite file, or a throw-away PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    else:
        yield from _postgres_schema_url()


@pytest.fixture
def migrated_url(database_url: str) -> str:
    upgrade(database_url)
    return database_url


@pytest.fixture
def ledger(migrated_url: str) -> Iterator[SqlLedger]:
    ledger = SqlLedger(migrated_url)
    yield ledger
    ledger.engine.dispose()


# ---------------------------------------------------------------------------------------------
# Claim, record, read
# ---------------------------------------------------------------------------------------------
def test_first_claim_reserves_the_key_with_a_lease(ledger: SqlLedger) -> None:
    claim = ledger.claim(KEY, now=NOW, lease_seconds=LEASE, request_key="req-1")

    assert claim.outcome is ClaimOutcome.CLAIMED
    assert not claim.recovered
    assert claim.entry.state is EntryState.RESERVED
    assert claim.entry.reserved_at == NOW
    assert claim.entry.lease_until == NOW + dt.timedelta(seconds=LEASE)
    assert claim.entry.request_key == "req-1"
    assert claim.entry.attempts == 0


def test_second_claim_of_a_reserved_key_is_busy(ledger: SqlLedger) -> None:
    ledger.claim(KEY, now=NOW, lease_seconds=LEASE)

    again = ledger.claim(KEY, now=NOW + dt.timedelta(seconds=5), lease_seconds=LEASE)

    assert again.outcome is ClaimOutcome.BUSY
    assert again.entry.reserved_at == NOW


def test_claim_after_record_created_reports_created_with_the_draft_ids(ledger: SqlLedger) -> None:
    ledger.claim(KEY, now=NOW, lease_seconds=LEASE)
    stored = ledger.record_created(KEY, _created(), drafted_on=NOW.date(), now=NOW)

    later = ledger.claim(KEY, now=NOW + dt.timedelta(days=30), lease_seconds=LEASE)

    assert stored.state is EntryState.CREATED
    assert later.outcome is ClaimOutcome.CREATED
    entry = later.entry
    assert (entry.draft_id, entry.message_id, entry.thread_id) == ("r-draft-1", "msg-1", "thread-1")
    assert entry.rfc_message_id == "<ic.1@example.com>"
    assert entry.draft_url == "https://mail.google.com/mail/#drafts/1"
    assert entry.drafted_on == NOW.date()
    assert ledger.get(KEY) == entry


def test_failed_key_is_claimable_again_and_counts_attempts(ledger: SqlLedger) -> None:
    ledger.claim(KEY, now=NOW, lease_seconds=LEASE)
    failed = ledger.record_failed(KEY, "gmail 503 backendError", now=NOW)

    retry = ledger.claim(KEY, now=NOW + dt.timedelta(seconds=1), lease_seconds=LEASE)

    assert failed.state is EntryState.FAILED
    assert failed.attempts == 1
    assert failed.error == "gmail 503 backendError"
    assert retry.outcome is ClaimOutcome.CLAIMED
    assert not retry.recovered
    assert retry.entry.attempts == 1
    assert ledger.claim(KEY, now=NOW, lease_seconds=LEASE).outcome is ClaimOutcome.BUSY


def test_expired_reservation_is_recovered_by_exactly_one_later_claim(ledger: SqlLedger) -> None:
    ledger.claim(KEY, now=NOW, lease_seconds=60)
    after_crash = NOW + dt.timedelta(seconds=61)

    recovered = ledger.claim(KEY, now=after_crash, lease_seconds=LEASE)
    second = ledger.claim(KEY, now=after_crash, lease_seconds=LEASE)

    assert recovered.outcome is ClaimOutcome.CLAIMED
    assert recovered.recovered
    assert recovered.entry.lease_until == after_crash + dt.timedelta(seconds=LEASE)
    assert second.outcome is ClaimOutcome.BUSY


def test_live_reservation_is_not_recovered_before_its_lease_ends(ledger: SqlLedger) -> None:
    ledger.claim(KEY, now=NOW, lease_seconds=60)

    early = ledger.claim(KEY, now=NOW + dt.timedelta(seconds=59), lease_seconds=LEASE)

    assert early.outcome is ClaimOutcome.BUSY


def test_failure_never_downgrades_a_created_draft(ledger: SqlLedger) -> None:
    ledger.claim(KEY, now=NOW, lease_seconds=LEASE)
    ledger.record_created(KEY, _created(), drafted_on=NOW.date(), now=NOW)

    entry = ledger.record_failed(KEY, "late timeout from a stale worker", now=NOW)

    assert entry.state is EntryState.CREATED
    assert ledger.claim(KEY, now=NOW, lease_seconds=LEASE).outcome is ClaimOutcome.CREATED


def test_first_recorded_draft_wins_when_recorded_twice(ledger: SqlLedger) -> None:
    ledger.claim(KEY, now=NOW, lease_seconds=LEASE)
    ledger.record_created(KEY, _created(1), drafted_on=NOW.date(), now=NOW)

    entry = ledger.record_created(KEY, _created(2), drafted_on=NOW.date(), now=NOW)

    assert entry.draft_id == "r-draft-1"


def test_recording_an_unclaimed_key_is_an_error(ledger: SqlLedger) -> None:
    with pytest.raises(LookupError):
        ledger.record_created(KEY, _created(), drafted_on=NOW.date(), now=NOW)
    with pytest.raises(LookupError):
        ledger.record_failed(KEY, "boom", now=NOW)
    assert ledger.get(KEY) is None


def test_long_error_text_is_truncated(ledger: SqlLedger) -> None:
    ledger.claim(KEY, now=NOW, lease_seconds=LEASE)

    entry = ledger.record_failed(KEY, "x" * 10_000, now=NOW)

    assert entry.error is not None
    assert len(entry.error) == 1_000


def test_naive_times_are_refused(ledger: SqlLedger) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ledger.claim(KEY, now=NOW.replace(tzinfo=None), lease_seconds=LEASE)


def test_times_come_back_in_utc_whatever_zone_went_in(ledger: SqlLedger) -> None:
    paris = dt.timezone(dt.timedelta(hours=1))
    ledger.claim(KEY, now=NOW.astimezone(paris), lease_seconds=LEASE)

    entry = ledger.get(KEY)

    assert entry is not None
    assert entry.reserved_at == NOW
    assert entry.reserved_at.utcoffset() == dt.timedelta(0)


def test_latest_created_is_the_highest_drafted_stage_below(ledger: SqlLedger) -> None:
    for stage in (7, 14, 21):
        key = DraftKey(KEY.scope, KEY.invoice_id, stage)
        ledger.claim(key, now=NOW, lease_seconds=LEASE)
        if stage != 21:
            ledger.record_created(key, _created(stage), drafted_on=NOW.date(), now=NOW)
    ledger.claim(DraftKey("other-sheet", KEY.invoice_id, 14), now=NOW, lease_seconds=LEASE)

    latest = ledger.latest_created(KEY.scope, KEY.invoice_id, below_stage=28)
    earlier = ledger.latest_created(KEY.scope, KEY.invoice_id, below_stage=14)

    assert latest is not None
    assert latest.key.stage == 14  # 21 is only reserved, not drafted
    assert latest.draft_id == "r-draft-14"
    assert earlier is not None
    assert earlier.key.stage == 7
    assert ledger.latest_created(KEY.scope, KEY.invoice_id, below_stage=7) is None
    assert ledger.latest_created("other-sheet", KEY.invoice_id, below_stage=42) is None


# ---------------------------------------------------------------------------------------------
# Races: one winner per key, across threads and across processes
# ---------------------------------------------------------------------------------------------
def _race_keys() -> list[DraftKey]:
    return [DraftKey("race", f"INV-{i:04d}", 7) for i in range(RACE_KEYS)]


def _prepare(ledger: SqlLedger, initial: str) -> None:
    """Leave every race key fresh, failed, or reserved by a holder that crashed an hour ago."""
    if initial == "fresh":
        return
    earlier = NOW - dt.timedelta(hours=1)
    for key in _race_keys():
        ledger.claim(key, now=earlier, lease_seconds=60)
        if initial == "failed":
            ledger.record_failed(key, "rate limited", now=earlier)


@pytest.mark.parametrize("initial", ["fresh", "failed", "expired"])
def test_sixteen_threads_racing_on_200_keys_claim_each_exactly_once(
    ledger: SqlLedger, initial: str
) -> None:
    _prepare(ledger, initial)
    keys = _race_keys()
    start = threading.Barrier(16)

    def race(seed: int) -> list[tuple[DraftKey, ClaimOutcome, bool]]:
        order = random.Random(seed).sample(keys, len(keys))
        start.wait(timeout=TIMEOUT)
        return [
            (k, (c := ledger.claim(k, now=NOW, lease_seconds=LEASE)).outcome, c.recovered)
            for k in order
        ]

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = [o for batch in pool.map(race, range(16)) for o in batch]

    claimed = Counter(key for key, outcome, _ in outcomes if outcome is ClaimOutcome.CLAIMED)
    assert claimed == Counter(keys)
    assert {o for _, o, _ in outcomes} <= {ClaimOutcome.CLAIMED, ClaimOutcome.BUSY}
    recovered = {r for _, o, r in outcomes if o is ClaimOutcome.CLAIMED}
    assert recovered == {initial == "expired"}


def _claim_all_in_process(
    url: str, seed: int, start: Any, results: Any
) -> None:  # runs in a spawned child
    ledger = SqlLedger(url)
    try:
        keys = random.Random(seed).sample(_race_keys(), RACE_KEYS)
        start.wait(timeout=TIMEOUT)
        won = [
            k.invoice_id
            for k in keys
            if ledger.claim(k, now=NOW, lease_seconds=LEASE).outcome is ClaimOutcome.CLAIMED
        ]
        results.put(("ok", won))
    except BaseException as exc:
        results.put(("error", repr(exc)))
    finally:
        ledger.engine.dispose()


def _race_four_processes(
    target: Callable[..., None], args_for: Callable[[int], tuple[Any, ...]]
) -> list[Any]:
    """Run ``target(*args_for(i), start, results)`` in 4 spawned processes released together by
    a barrier; return what each put on ``results``."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(4)
    results = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args_for(i), start, results)) for i in range(4)]
    for p in procs:
        p.start()
    try:
        return [results.get(timeout=TIMEOUT) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=TIMEOUT)
            if p.is_alive():
                p.kill()


@pytest.mark.parametrize("initial", ["fresh", "expired"])
def test_four_processes_racing_on_200_keys_claim_each_exactly_once(
    ledger: SqlLedger, migrated_url: str, initial: str
) -> None:
    _prepare(ledger, initial)
    reports = _race_four_processes(_claim_all_in_process, lambda seed: (migrated_url, seed))
    assert [status for status, _ in reports] == ["ok"] * 4, reports
    claimed = Counter(invoice_id for _, won in reports for invoice_id in won)
    assert claimed == Counter(k.invoice_id for k in _race_keys())


# ---------------------------------------------------------------------------------------------
# Migrations and schema
# ---------------------------------------------------------------------------------------------
def _upgrade_in_process(url: str, start: Any, results: Any) -> None:  # runs in a spawned child
    try:
        start.wait(timeout=TIMEOUT)
        upgrade(url)
        results.put("ok")
    except BaseException as exc:
        results.put(repr(exc))


def test_migrations_run_concurrently_from_four_processes_without_error(database_url: str) -> None:
    reports = _race_four_processes(_upgrade_in_process, lambda _: (database_url,))
    assert reports == ["ok"] * 4
    assert current_revision(database_url) == head_revision() == "0001"


def test_migrating_twice_is_a_no_op(migrated_url: str) -> None:
    upgrade(migrated_url)

    assert current_revision(migrated_url) == head_revision()


def test_migrated_schema_matches_the_tables_the_code_uses(migrated_url: str) -> None:
    engine = make_engine(migrated_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()

    assert diff == []


def test_no_table_has_a_column_for_bodies_recipients_subjects_or_tokens(
    migrated_url: str,
) -> None:
    engine = make_engine(migrated_url)
    try:
        inspector = sa.inspect(engine)
        columns = {
            (table, column["name"])
            for table in ("draft_ledger", "runs", "payment_links")
            for column in inspector.get_columns(table)
        }
    finally:
        engine.dispose()

    forbidden = ("body", "html", "raw", "subject", "recipient", "to", "email", "token", "secret")
    leaks = {(t, c) for t, c in columns if any(c == f or f in c.split("_") for f in forbidden)}
    assert leaks == set()
    assert ("draft_ledger", "draft_id") in columns


# ---------------------------------------------------------------------------------------------
# Runs and payment links
# ---------------------------------------------------------------------------------------------
def test_run_moves_from_queued_to_done_with_progress_and_results(migrated_url: str) -> None:
    runs = SqlRuns(migrated_url)
    run = runs.create_run("sheet-abc", now=NOW, total=3)
    assert run.state is RunState.QUEUED
    assert run.started_at is None

    runs.update_run(run.id, now=NOW + dt.timedelta(seconds=1), state=RunState.RUNNING)
    runs.update_run(run.id, now=NOW + dt.timedelta(seconds=2), done=2)
    rows = [{"row": 2, "invoice_id": "INV-1", "action": "draft", "draft_id": "r-1"}]
    runs.update_run(
        run.id,
        now=NOW + dt.timedelta(seconds=3),
        state=RunState.DONE,
        done=3,
        summary={"drafted": 1, "today": dt.date(2025, 1, 22)},
        results=rows,
    )

    stored = runs.get_run(run.id)
    assert stored is not None
    assert stored.state is RunState.DONE
    assert (stored.done, stored.total) == (3, 3)
    assert stored.started_at == NOW + dt.timedelta(seconds=1)
    assert stored.finished_at == NOW + dt.timedelta(seconds=3)
    assert stored.summary == {"drafted": 1, "today": "2025-01-22"}
    assert list(stored.results) == rows
    runs.engine.dispose()


def test_run_results_are_stored_without_email_bodies(migrated_url: str) -> None:
    runs = SqlRuns(migrated_url)
    run = runs.create_run("sheet-abc", now=NOW)
    row = {"invoice_id": "INV-1", "subject": "Reminder", "body": "Dear Ann, pay 100", "html": "<p>"}

    stored = runs.update_run(run.id, now=NOW, results=[row])

    assert list(stored.results) == [{"invoice_id": "INV-1", "subject": "Reminder"}]
    runs.engine.dispose()


def test_finished_run_cannot_be_changed_and_unknown_ids_are_not_found(migrated_url: str) -> None:
    runs = SqlRuns(migrated_url)
    run = runs.create_run("sheet-abc", now=NOW)
    runs.update_run(run.id, now=NOW, state=RunState.FAILED, error="sheet not shared")

    with pytest.raises(ValueError, match="already failed"):
        runs.update_run(run.id, now=NOW, done=1)
    assert runs.get_run(str(uuid.uuid4())) is None
    assert runs.get_run("not-a-uuid") is None
    with pytest.raises(LookupError):
        runs.update_run(str(uuid.uuid4()), now=NOW, done=1)
    runs.engine.dispose()


def test_first_saved_payment_link_for_a_balance_is_kept(migrated_url: str) -> None:
    links = SqlPaymentLinks(migrated_url)
    first = PaymentLink(
        "sheet-abc", "INV-1", "usd", 123_450, "https://buy.stripe.com/a", "pl_a", NOW
    )
    second = PaymentLink(
        "sheet-abc", "INV-1", "USD", 123_450, "https://buy.stripe.com/b", "pl_b", NOW
    )

    saved = links.save_payment_link(first)
    again = links.save_payment_link(second)

    assert saved.url == again.url == "https://buy.stripe.com/a"
    assert saved.currency == "USD"
    assert links.get_payment_link("sheet-abc", "INV-1", "USD", 100) is None
    assert links.get_payment_link("sheet-abc", "INV-1", "usd", 123_450) == saved
    links.engine.dispose()


# ---------------------------------------------------------------------------------------------
# URLs (no database needed)
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    ["postgres://u:p@db:5432/ic", "postgresql://u:p@db:5432/ic", "postgresql+psycopg://u:p@db/ic"],
)
def test_postgres_urls_are_driven_by_psycopg3(url: str) -> None:
    assert normalize_url(url).drivername == "postgresql+psycopg"


def test_unsupported_database_urls_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported database"):
        normalize_url("mysql://u:p@db/ic")
