"""One mailbox's Gmail quota, shared by every worker and instance through the ledger's database.

Gmail counts 15,000 units per user per minute across all processes, so a pace kept per process is
multiplied by their number. Each mailbox has one row: the time its next call may start. A caller
takes the slot ``max(next_at, now)`` and moves ``next_at`` on by units ÷ rate in one UPDATE …
RETURNING (PostgreSQL locks the row until COMMIT, SQLite's BEGIN IMMEDIATE the file), then sleeps
until its slot. Slots go out in order with no burst allowance: a burst on top of the steady rate is
what tips a rolling window over the quota. A caller waking over a quarter slot late (a busy CPU)
lets its slot go for the next free one, so calls do not bunch: a second holds at most rate + 1.
Times are Unix time: hosts sharing PostgreSQL need synchronised clocks.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from service.adapters.ledger_sql import insert_ignoring_conflicts, mailbox_pace

_P = mailbox_pace.c


class SqlPacer:
    """The Pacer of adapters/google_api.py on SQLite or PostgreSQL."""

    def __init__(
        self,
        engine: Engine,
        units_per_second: float,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if units_per_second <= 0:
            raise ValueError("units_per_second must be positive")
        self._engine, self._rate = engine, units_per_second
        self._clock, self._sleep = clock, sleep

    def acquire(self, mailbox: str, units: float) -> float:
        """Take ``mailbox``'s next slot for ``units`` and sleep until it; return the wait."""
        step, waited = units / self._rate, 0.0
        for last_try in (False, True):
            slot = self._take(mailbox, step)
            wait = slot - self._clock()
            if wait <= 0:
                break
            self._sleep(wait)
            waited += wait
            # Woken late: let the slot go (see above), once only, so a starved process gets through.
            if last_try or self._clock() - slot <= step / 4:
                break
        return waited

    def _take(self, mailbox: str, step: float) -> float:
        """The start of the mailbox's next free slot, taken for ``step`` seconds."""
        with self._engine.begin() as conn:
            now = self._clock()
            start = sa.case((_P.next_at > now, _P.next_at), else_=now)
            take = (
                sa.update(mailbox_pace)
                .where(_P.mailbox == mailbox)
                .values(next_at=start + step)
                .returning(_P.next_at)
            )
            ends = conn.execute(take).scalar()
            if ends is None:  # the mailbox's first call: its row starts now
                row = {"mailbox": mailbox, "next_at": now}
                conn.execute(insert_ignoring_conflicts(conn, mailbox_pace, row))
                ends = conn.execute(take).scalar_one()
        return float(ends) - step
