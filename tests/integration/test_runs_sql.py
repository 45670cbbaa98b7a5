"""Headless runs in SQL: a run whose worker died is interrupted after its lease, on SQLite and
PostgreSQL, and one run per sheet at a time across instances."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from service.adapters.ledger_sql import SqlLedger
from service.adapters.migrate import upgrade
from service.adapters.runs_sql import INTERRUPTED, RunInProgress, SqlDraftReview, SqlRuns
from service.ports import CreatedDraft, DraftKey, RunState
from tests.conftest import FIXED_NOW

pytestmark = pytest.mark.timeout(60)

LEASE = 60.0


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'runs.db'}"
    else:
        url = request.getfixturevalue("pg_schema_url")
    upgrade(url)
    return url


class Clock:
    def __init__(self) -> None:
        self.now = FIXED_NOW

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def instances(database_url: str) -> tuple[Clock, Callable[[], SqlRuns]]:
    """A shared clock and a maker of instances that share nothing but the database."""
    clock = Clock()
    return clock, lambda: SqlRuns(database_url, lease_seconds=LEASE, clock=clock)


def test_a_run_silent_beyond_its_lease_is_interrupted_and_any_instance_starts_the_next(
    instances: tuple[Clock, Callable[[], SqlRuns]],
) -> None:
    clock, instance = instances
    a, b = instance(), instance()
    dead = a.create_run("sheet-1", now=clock())
    a.update_run(dead.id, now=clock(), state=RunState.RUNNING)  # then its worker was killed

    clock.now += dt.timedelta(seconds=LEASE - 1)
    with pytest.raises(RunInProgress):  # still within its lease: it may be working
        b.create_run("sheet-1", now=clock())
    assert b.get_run(dead.id).state is RunState.RUNNING  # type: ignore[union-attr]

    clock.now += dt.timedelta(seconds=2)
    following = b.create_run("sheet-1", now=clock())  # the next run marks it interrupted

    assert following.state is RunState.QUEUED
    seen = a.get_run(dead.id)
    assert seen is not None
    assert (seen.state, seen.error, seen.finished_at) == (RunState.FAILED, INTERRUPTED, clock())
    with pytest.raises(ValueError, match="already failed"):  # a late word from the dead is refused
        a.update_run(dead.id, now=clock(), state=RunState.DONE)


def test_reading_a_silent_run_marks_it_interrupted_without_a_new_run(
    instances: tuple[Clock, Callable[[], SqlRuns]],
) -> None:
    clock, instance = instances
    runs = instance()
    queued = runs.create_run("sheet-2", now=clock())  # accepted, never started

    clock.now += dt.timedelta(seconds=LEASE + 1)
    seen = runs.get_run(queued.id)

    assert seen is not None and seen.state is RunState.FAILED
    assert seen.error is not None and seen.error.startswith("interrupted")


def test_a_run_touched_within_its_lease_stays_running(
    instances: tuple[Clock, Callable[[], SqlRuns]],
) -> None:
    clock, instance = instances
    runs = instance()
    run = runs.create_run("sheet-3", now=clock())
    for _ in range(5):  # a heartbeat every half lease, for two and a half leases
        clock.now += dt.timedelta(seconds=LEASE / 2)
        runs.update_run(run.id, now=clock())
    clock.now += dt.timedelta(seconds=LEASE / 2)

    assert runs.get_run(run.id).state is RunState.QUEUED  # type: ignore[union-attr]


def test_of_racing_instances_one_starts_the_sheets_run(
    instances: tuple[Clock, Callable[[], SqlRuns]],
) -> None:
    clock, instance = instances
    racers = [instance() for _ in range(6)]
    barrier, started, refused = threading.Barrier(len(racers)), [], []

    def start(runs: SqlRuns) -> None:
        barrier.wait()
        try:
            started.append(runs.create_run("sheet-4", now=clock()))
        except RunInProgress as exc:
            refused.append(exc.run.id)

    threads = [threading.Thread(target=start, args=(r,)) for r in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(started) == 1
    assert set(refused) == {started[0].id}
    assert racers[0].create_run("another-sheet", now=clock()).state is RunState.QUEUED


def test_review_reads_a_days_drafts_and_each_invoices_latest_earlier_one(database_url: str) -> None:
    ledger, review = SqlLedger(database_url), SqlDraftReview(database_url)
    day = dt.date(2026, 11, 24)

    def drafted(invoice_id: str, stage: int, on: dt.date, scope: str = "sheet-r") -> None:
        key = DraftKey(scope, invoice_id, stage)
        ledger.claim_all([key], now=FIXED_NOW, lease_seconds=LEASE)
        created = CreatedDraft(f"d-{invoice_id}-{stage}", url=f"https://x/{invoice_id}/{stage}")
        ledger.record_created(key, created, drafted_on=on, now=FIXED_NOW, subject="S",
                              recipients=["ap@client.example"])  # fmt: skip

    drafted("INV-1", 7, day - dt.timedelta(days=14))
    drafted("INV-1", 14, day - dt.timedelta(days=7))  # supersedes its stage 7
    drafted("INV-2", 7, day - dt.timedelta(days=3))
    drafted("INV-2", 14, day)  # today's: INV-2 has nothing earlier left to send
    drafted("INV-3", 7, day, scope="another-sheet")
    never_made = DraftKey("sheet-r", "INV-4", 7)
    ledger.claim_all([never_made], now=FIXED_NOW, lease_seconds=LEASE)  # claimed, never made

    todays = review.drafted_on(day)
    assert sorted((e.key.invoice_id, e.key.stage) for e, _ in todays) == [
        ("INV-2", 14),
        ("INV-3", 7),
    ]
    assert all(at == FIXED_NOW and e.subject == "S" for e, at in todays)
    earlier = review.latest_before(day)
    assert [(e.key.invoice_id, e.key.stage) for e, _ in earlier] == [("INV-1", 14)]
    assert earlier[0][0].recipients == ("ap@client.example",)
