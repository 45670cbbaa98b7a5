"""Beside the ledger, in its database: headless runs (``/v1/runs``), payment links, and the
ledger's drafts read back for review (`invoice-collector drafts`); pass ``ledger.engine`` to
share its pool."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from service.adapters.ledger_sql import (
    ERROR_MAX_CHARS,
    SqlStore,
    draft_ledger,
    insert_ignoring_conflicts,
    ledger_entry,
    payment_links,
    read_connection,
    require_aware,
    runs,
)
from service.ports import FINISHED, Clock, EntryState, LedgerEntry, Run, RunState, utc_now

# Result rows may be API response rows: these keys hold email content, which is never stored
# (DESIGN §1, privacy). They are dropped, at any depth, before a row reaches the database.
BODY_KEYS = frozenset({"body", "html", "html_body", "text_body", "raw"})


@dataclass(frozen=True)
class PaymentLink:
    """A payment link made for one invoice balance, so a retry reuses it instead of a new one."""

    scope: str
    invoice_id: str
    currency: str
    amount_minor: int
    url: str
    provider_id: str | None
    created_at: dt.datetime


def strip_bodies(value: Any) -> Any:
    """``value`` with every ``BODY_KEYS`` entry removed from the mappings inside it."""
    if isinstance(value, Mapping):
        return {k: strip_bodies(v) for k, v in value.items() if k not in BODY_KEYS}
    if isinstance(value, list | tuple):
        return [strip_bodies(v) for v in value]
    return value


_UNFINISHED = (RunState.QUEUED.value, RunState.RUNNING.value)
INTERRUPTED = "interrupted: its worker stopped before it finished; start another run"


class RunInProgress(Exception):
    """A live run of the same sheet is under way: one run per sheet at a time."""

    def __init__(self, run: Run) -> None:
        super().__init__(f"run {run.id} of this sheet is {run.state.value}")
        self.run = run


class SqlRuns(SqlStore):
    """Headless runs in the ``runs`` table. A run's worker touches it while it works; one silent
    for ``lease_seconds`` lost its worker (a crash, a killed container), so it is marked failed,
    "interrupted", when next read or when its sheet's next run starts: none stays "running"."""

    def __init__(
        self, url: str | URL | Engine, *, lease_seconds: float = 300.0, clock: Clock = utc_now
    ) -> None:
        super().__init__(url)
        self.lease = dt.timedelta(seconds=lease_seconds)
        self._clock = clock

    def create_run(self, scope: str, *, now: dt.datetime, total: int = 0) -> Run:
        """Store a new queued run and return it; RunInProgress while a live run has the sheet."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # SQLite's BEGIN IMMEDIATE serialises already
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(scope))))
            self._interrupt(conn, runs.c.scope == scope, now)
            live = conn.execute(
                sa.select(runs.c.id).where(runs.c.scope == scope, runs.c.state.in_(_UNFINISHED))
            ).first()
            if live is not None:
                raise RunInProgress(self._fetch(conn, live.id))
            insert = sa.insert(runs).values(
                id=uuid.uuid4(),
                scope=scope,
                state=RunState.QUEUED.value,
                created_at=require_aware(now),
                updated_at=now,
                progress_total=total,
                summary={},
                results=[],
            )
            return _run(conn.execute(insert.returning(*runs.c)).mappings().one())

    def update_run(
        self,
        run_id: str,
        *,
        now: dt.datetime,
        state: RunState | None = None,
        done: int | None = None,
        total: int | None = None,
        summary: Mapping[str, Any] | None = None,
        results: Sequence[Mapping[str, Any]] | None = None,
        error: str | None = None,
    ) -> Run:
        """Change a run's state, progress, summary or results; a finished run is final."""
        require_aware(now)
        parsed = _parse_id(run_id)
        if parsed is None:
            raise LookupError(f"no run {run_id!r}")
        given = {
            "progress_done": done,
            "progress_total": total,
            "summary": None if summary is None else strip_bodies(summary),
            "results": None if results is None else strip_bodies(list(results)),
            "error": None if error is None else error[:ERROR_MAX_CHARS],
        }
        values = {"updated_at": now, **{k: v for k, v in given.items() if v is not None}}
        with self.engine.begin() as conn:
            current = self._fetch(conn, parsed)
            if current.state in FINISHED:
                raise ValueError(f"run {run_id} is already {current.state}")
            if state is not None:
                values["state"] = state.value
                if state is RunState.RUNNING or state in FINISHED:
                    values["started_at"] = current.started_at or now
                if state in FINISHED:
                    values["finished_at"] = now
            conn.execute(sa.update(runs).where(runs.c.id == parsed).values(values))
            return self._fetch(conn, parsed)

    def get_run(self, run_id: str) -> Run | None:
        """The run with this id, or None (also for an id that is not a UUID)."""
        parsed = _parse_id(run_id)
        if parsed is None:
            return None
        with read_connection(self.engine) as conn:
            row = conn.execute(sa.select(runs).where(runs.c.id == parsed)).mappings().first()
        if row is None:
            return None
        run, now = _run(row), self._clock()
        if run.state in FINISHED or run.updated_at >= now - self.lease:
            return run
        with self.engine.begin() as conn:
            self._interrupt(conn, runs.c.id == parsed, now)
            return self._fetch(conn, parsed)

    def _interrupt(self, conn: sa.Connection, which: Any, now: dt.datetime) -> None:
        stale = sa.and_(which, runs.c.state.in_(_UNFINISHED), runs.c.updated_at < now - self.lease)
        conn.execute(
            sa.update(runs)
            .where(stale)
            .values(state=RunState.FAILED.value, error=INTERRUPTED, finished_at=now, updated_at=now)
        )

    @staticmethod
    def _fetch(conn: sa.Connection, run_id: uuid.UUID) -> Run:
        row = conn.execute(sa.select(runs).where(runs.c.id == run_id)).mappings().first()
        if row is None:
            raise LookupError(f"no run {run_id}")
        return _run(row)


def _parse_id(run_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(run_id)
    except (ValueError, AttributeError, TypeError):
        return None


def _run(row: sa.RowMapping) -> Run:
    return Run(
        **{k: row[k] for k in ("scope", "created_at", "updated_at", "started_at", "finished_at")},
        id=str(row["id"]),
        state=RunState(row["state"]),
        done=row["progress_done"],
        total=row["progress_total"],
        summary=row["summary"] or {},
        results=tuple(row["results"] or ()),
        error=row["error"],
    )


class SqlDraftReview(SqlStore):
    """The ledger's drafts read back for review: metadata only (no body is ever stored)."""

    def drafted_on(self, day: dt.date) -> list[tuple[LedgerEntry, dt.datetime]]:
        """The drafts of ``day`` (the sheet's date), each with when it was recorded."""
        return self._select(draft_ledger.c.drafted_on == day, draft_ledger.c.updated_at)

    def latest_before(self, day: dt.date) -> list[tuple[LedgerEntry, dt.datetime]]:
        """Each invoice's latest reminder, when drafted before ``day``: it may still sit unsent."""
        t, later = draft_ledger.c, draft_ledger.alias("later")
        newer = sa.exists().where(
            later.c.scope == t.scope,
            later.c.invoice_id == t.invoice_id,
            later.c.stage > t.stage,
            later.c.state == EntryState.CREATED.value,
        )
        return self._select(sa.and_(t.drafted_on < day, ~newer), t.drafted_on)

    def _select(self, where: Any, order: Any) -> list[tuple[LedgerEntry, dt.datetime]]:
        t = draft_ledger.c
        query = (
            sa.select(draft_ledger)
            .where(where, t.state == EntryState.CREATED.value)
            .order_by(order, t.invoice_id, t.stage)
        )
        with read_connection(self.engine) as conn:
            rows = conn.execute(query).mappings().all()
        return [(ledger_entry(row), row["updated_at"]) for row in rows]


class SqlPaymentLinks(SqlStore):
    """Payment links in the ``payment_links`` table, one per (scope, invoice, currency, amount)."""

    def get_payment_link(
        self, scope: str, invoice_id: str, currency: str, amount_minor: int
    ) -> PaymentLink | None:
        """The stored link for this balance, or None."""
        t = payment_links.c
        query = sa.select(payment_links).where(
            t.scope == scope,
            t.invoice_id == invoice_id,
            t.currency == currency.upper(),
            t.amount_minor == amount_minor,
        )
        with read_connection(self.engine) as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else PaymentLink(**row)  # its fields are the table's columns

    def save_payment_link(self, link: PaymentLink) -> PaymentLink:
        """Store ``link`` unless its balance has one; return the stored one. The first writer
        wins, so two workers that raced to make a link both use the same one."""
        require_aware(link.created_at)
        values = {**asdict(link), "currency": link.currency.upper()}
        with self.engine.begin() as conn:
            conn.execute(insert_ignoring_conflicts(conn, payment_links, values))
        stored = self.get_payment_link(
            link.scope, link.invoice_id, link.currency, link.amount_minor
        )
        if stored is None:  # rows are never deleted; this would be a broken database
            raise LookupError("payment link vanished after insert")
        return stored
