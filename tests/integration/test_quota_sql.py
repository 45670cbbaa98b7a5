"""One Gmail quota per mailbox through the ledger's database (issue 17): SqlPacer on SQLite and
PostgreSQL, with a frozen clock, so slots are compared exactly and nothing is timed."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.adapters.ledger_sql import make_engine
from service.adapters.migrate import upgrade
from service.adapters.quota_sql import SqlPacer

pytestmark = pytest.mark.timeout(60)
T0 = 1_800_000_000.0  # a fixed Unix time
RATE = 240.0  # units per second: 24 creates of 10 units


class FrozenClock:
    """Time stands still unless moved; sleeping is recorded, not done — but with ``late`` set,
    the next sleep ends that much after it should (a busy CPU) and moves the clock."""

    def __init__(self) -> None:
        self.now = T0
        self.slept: list[float] = []
        self.late = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if self.late:
            self.now += seconds + self.late
            self.late = 0.0


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def migrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_schema_url")
    upgrade(url)
    return url


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def pacer(migrated_url: str, clock: FrozenClock) -> Iterator[SqlPacer]:
    engine = make_engine(migrated_url)
    yield SqlPacer(engine, RATE, clock=clock, sleep=clock.sleep)
    engine.dispose()


def test_calls_wait_for_their_slot_in_turn_at_the_rate(pacer: SqlPacer, clock: FrozenClock) -> None:
    waits = [pacer.acquire("ar@acme.example.com", 10) for _ in range(4)]
    waits.append(pacer.acquire("ar@acme.example.com", 5))  # a read costs half a create
    waits.append(pacer.acquire("ar@acme.example.com", 10))

    assert waits == pytest.approx([0, 1 / 24, 2 / 24, 3 / 24, 4 / 24, 4.5 / 24], abs=1e-6)
    assert clock.slept == pytest.approx(waits[1:], abs=1e-6)  # no sleep for a slot that is now


def test_an_idle_mailbox_banks_no_burst(pacer: SqlPacer, clock: FrozenClock) -> None:
    pacer.acquire("ar@acme.example.com", 10)
    clock.now += 3600  # an hour without a call

    waits = [pacer.acquire("ar@acme.example.com", 10) for _ in range(3)]

    assert waits == pytest.approx([0, 1 / 24, 2 / 24], abs=1e-6)


def test_a_call_that_wakes_late_lets_its_slot_go_rather_than_bunch(
    pacer: SqlPacer, clock: FrozenClock
) -> None:
    pacer.acquire("ar@acme.example.com", 10)  # the slot at T0
    clock.late = 0.5 / 24  # the next call wakes half a slot after its slot (T0 + 1/24)

    waited = pacer.acquire("ar@acme.example.com", 10)

    # Sent then, it would land 1/48 s before the call of the slot after: it waits for a free one.
    assert clock.slept == pytest.approx([1 / 24, 0.5 / 24], abs=1e-6)
    assert waited == pytest.approx(1.5 / 24, abs=1e-6)
    assert pacer.acquire("ar@acme.example.com", 10) == pytest.approx(1.5 / 24, abs=1e-6)


def test_each_mailbox_has_its_own_pace(pacer: SqlPacer) -> None:
    assert pacer.acquire("a@acme.example.com", 10) == 0
    assert pacer.acquire("b@acme.example.com", 10) == 0
    assert pacer.acquire("a@acme.example.com", 10) == pytest.approx(1 / 24, abs=1e-6)


def test_another_instance_with_its_own_engine_shares_the_schedule(
    pacer: SqlPacer, migrated_url: str, clock: FrozenClock
) -> None:
    other_engine = make_engine(migrated_url)
    other = SqlPacer(other_engine, RATE, clock=clock, sleep=clock.sleep)
    try:
        waits = [p.acquire("ar@acme.example.com", 10) for p in (pacer, other, pacer, other)]
    finally:
        other_engine.dispose()

    assert waits == pytest.approx([0, 1 / 24, 2 / 24, 3 / 24], abs=1e-6)


def _acquire_in_process(url: str, start: Any, results: Any) -> None:
    clock = FrozenClock()
    engine = make_engine(url)
    pacer = SqlPacer(engine, RATE, clock=clock, sleep=clock.sleep)
    start.wait()
    results.put([pacer.acquire("ar@acme.example.com", 10) for _ in range(25)])
    engine.dispose()


def test_four_processes_racing_never_share_a_slot(migrated_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_acquire_in_process, args=(migrated_url, start, results))
             for _ in range(4)]  # fmt: skip
    for p in procs:
        p.start()
    try:
        waits = sorted(w for _ in procs for w in results.get(timeout=45))
    finally:
        for p in procs:
            p.join(timeout=45)

    # Every process's clock reads T0: the hundred slots are 0, 1/24, 2/24 … with no gap or twin.
    assert [round(w * 24, 3) for w in waits] == list(range(100))
