"""What only the SQL ledger has: races across threads and processes, migrations, the schema,
runs and payment links — on SQLite (a temp file) and real PostgreSQL.

The claim/record rules every Ledger keeps (the fake too) are in test_ledger_contract.py.
PostgreSQL cases need ``TEST_DATABASE_URL`` (e.g.
``postgresql+psycopg://postgres@127.0.0.1:5432/test``; conftest skips them loudly without it,
or fails under CI=true); each test gets its own schema, dropped afterwards.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import random
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from service.adapters.ledger_sql import SqlLedger, make_engine, metadata, normalize_url
from service.adapters.migrate import current_revision, head_revision, upgrade
from service.adapters.runs_sql import PaymentLink, RunState, SqlPaymentLinks, SqlRuns
from service.ports import ClaimOutcome, DraftKey

pytestmark = pytest.mark.timeout(60)  # a hang (lock, deadlock) fails fast, not at 300 s

NOW = dt.datetime(2025, 1, 22, 9, 0, tzinfo=dt.UTC)
LEASE = 300.0
RACE_KEYS = 200
TIMEOUT = 45  # below the test timeout, so our own wait fails first, with a message


# ---------------------------------------------------------------------------------------------
# Fixtures: one fresh database per test, on each backend
# ---------------------------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or a throw-away PostgreSQL schema (conftest)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    url: str = request.getfixturevalue("pg_schema_url")
    return url


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
        ledger.claim_all([key], now=earlier, lease_seconds=60)
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
            (k, (c := ledger.claim_all([k], now=NOW, lease_seconds=LEASE)[0]).outcome, c.recovered)
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
            for c in ledger.claim_all([k], now=NOW, lease_seconds=LEASE)
            if c.outcome is ClaimOutcome.CLAIMED
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
    assert current_revision(database_url) == head_revision() is not None


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


def test_no_table_has_a_column_for_bodies_or_tokens(
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

    forbidden = ("body", "html", "raw", "text", "content", "token", "secret", "password")
    words = {f + plural for f in forbidden for plural in ("", "s")}
    leaks = {(t, c) for t, c in columns if words & set(c.split("_"))}
    assert leaks == set()
    assert ("draft_ledger", "draft_id") in columns
    # A draft's subject, recipients and mailbox are its only message metadata (for review,
    # threading and teams); nothing else of the message is a column.
    message = {c for t, c in columns if t == "draft_ledger"} - {
        "scope", "invoice_id", "stage", "state", "reserved_at", "lease_until", "attempts",
        "draft_id", "message_id", "thread_id", "rfc_message_id", "draft_url", "drafted_on",
        "request_key", "error", "created_at", "updated_at",
    }  # fmt: skip
    assert message == {"subject", "recipients", "mailbox"}


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
