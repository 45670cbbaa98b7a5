"""The exactly-once ledger of DESIGN §7 on SQLite or PostgreSQL, with SQLAlchemy Core.

One row per (scope, invoice_id, stage). A claim is a unique insert; taking over a failed or
abandoned key is an UPDATE guarded on the state it was read in, so of N racing claimers exactly
one sees a changed row. No body or token is stored: of a message, only its subject and
recipients, as metadata for review and threading.

Engines are per process: build them in the gunicorn worker after fork (``create_app`` or
``post_fork``), never at import time — a pooled connection inherited across fork is shared by
two processes and corrupts both sessions.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, astuple, fields
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine, make_url

from service.ports import Claim, ClaimOutcome, CreatedDraft, DraftKey, EntryState, LedgerEntry

SQLITE_BUSY_TIMEOUT_MS = 30_000
ERROR_MAX_CHARS = 1_000
# Execution option read by the SQLite "begin" hook: writes take the write lock up front.
SQLITE_BEGIN_OPTION = "invoice_collector_sqlite_begin"
# Dates and Decimals in run summaries become text rather than failing the whole run.
_json_dumps = functools.partial(json.dumps, default=str, ensure_ascii=False)


def normalize_url(url: str | URL) -> URL:
    """Parse a database URL; bare ``postgres://``/``postgresql://`` become psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        # Heroku-style ``postgres://`` and driverless URLs would pick psycopg2, not installed.
        return parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() in ("postgres", "postgresql", "sqlite"):
        return parsed
    raise ValueError(f"unsupported database {parsed.drivername!r}: use sqlite:/// or postgresql://")


def make_engine(url: str | URL) -> Engine:
    """An engine for SQLite (WAL, busy timeout, foreign keys) or PostgreSQL; one per process."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(
            parsed,
            # A few connections per gunicorn worker; pre-ping survives a PostgreSQL restart or an
            # idle connection cut by a proxy, recycle stays under common idle timeouts.
            pool_size=5,
            max_overflow=10,
            pool_timeout=30,
            pool_pre_ping=True,
            pool_recycle=1800,
            connect_args={"connect_timeout": 10, "application_name": "invoice-collector"},
            json_serializer=_json_dumps,
        )
    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, json_serializer=_json_dumps
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (below): the sqlite3 module's legacy mode begins
        # lazily, so a read-then-write transaction could fail with SQLITE_BUSY, not wait.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        # WAL lets readers run beside the one writer; FULL sync keeps a committed claim on
        # power loss, which is the whole point of the ledger. WAL is a property of the file, set
        # once; switching needs the file to itself, and SQLite answers "database is locked" at
        # once, without its busy handler, while another process holds a lock (as when several
        # workers open a new ledger together). So wait here instead.
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
        while cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            try:
                cursor.execute("PRAGMA journal_mode = WAL")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.005)
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # IMMEDIATE takes the database's write lock at BEGIN (waiting up to busy_timeout), so
        # every write transaction is serialised across threads and processes on this file.
        mode = conn.get_execution_options().get(SQLITE_BEGIN_OPTION, "IMMEDIATE")
        if mode not in ("IMMEDIATE", "DEFERRED"):
            raise ValueError(f"unknown SQLite BEGIN mode {mode!r}")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def read_connection(engine: Engine) -> Connection:
    """A connection for reads only: on SQLite it begins DEFERRED and takes no write lock."""
    return engine.connect().execution_options(**{SQLITE_BEGIN_OPTION: "DEFERRED"})


# --- Schema: the migrations in service/migrations create exactly this ------------------------
class UtcDateTime(sa.types.TypeDecorator[dt.datetime]):
    """An aware UTC datetime on every backend (SQLite keeps naive text, so tz is re-attached)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: sa.Dialect) -> Any:
        if value is None:
            return None
        value = require_aware(value).astimezone(dt.UTC)
        # SQLite stores fixed-width naive text: comparisons and equality guards stay exact.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def require_aware(value: dt.datetime) -> dt.datetime:
    """``value`` if it carries a timezone; a naive time is a bug (whose clock is it?)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("datetimes given to the ledger must be timezone-aware")
    return value


metadata = sa.MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    }
)

draft_ledger = sa.Table(
    "draft_ledger",
    metadata,
    sa.Column("scope", sa.String(), primary_key=True),
    sa.Column("invoice_id", sa.String(), primary_key=True),
    sa.Column("stage", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("reserved_at", UtcDateTime(), nullable=False),
    sa.Column("lease_until", UtcDateTime(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("draft_id", sa.String()),
    sa.Column("message_id", sa.String()),
    sa.Column("thread_id", sa.String()),
    sa.Column("rfc_message_id", sa.String()),
    sa.Column("draft_url", sa.Text()),
    sa.Column("drafted_on", sa.Date()),
    sa.Column("request_key", sa.String()),
    sa.Column("error", sa.Text()),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.Column("subject", sa.Text()),
    sa.Column("recipients", sa.JSON()),
    sa.Column("mailbox", sa.String()),
    sa.CheckConstraint("state IN ('reserved', 'created', 'failed')", name="state"),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("scope", sa.String(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.Column("started_at", UtcDateTime()),
    sa.Column("finished_at", UtcDateTime()),
    sa.Column("progress_done", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("progress_total", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("summary", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
    sa.Column("results", sa.JSON().with_variant(postgresql.JSONB(), "postgresql")),
    sa.Column("error", sa.Text()),
    sa.CheckConstraint("state IN ('queued', 'running', 'done', 'failed')", name="state"),
)

payment_links = sa.Table(
    "payment_links",
    metadata,
    sa.Column("scope", sa.String(), primary_key=True),
    sa.Column("invoice_id", sa.String(), primary_key=True),
    sa.Column("currency", sa.String(3), primary_key=True),
    sa.Column("amount_minor", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("url", sa.Text(), nullable=False),
    sa.Column("provider_id", sa.String()),
    sa.Column("created_at", UtcDateTime(), nullable=False),
)

# One row per mailbox: when its next Gmail call may start (adapters/quota_sql.py).
mailbox_pace = sa.Table(
    "mailbox_pace",
    metadata,
    sa.Column("mailbox", sa.String(), primary_key=True),
    sa.Column("next_at", sa.Double(), nullable=False),  # Unix time in seconds
)


def insert_ignoring_conflicts(
    engine_or_conn: Engine | Connection, table: sa.Table, values: Mapping[str, Any]
) -> sa.Insert:
    """``INSERT … ON CONFLICT DO NOTHING`` on the table's primary key, for either backend."""
    keys = [c.name for c in table.primary_key.columns]
    insert = postgresql.insert if engine_or_conn.dialect.name == "postgresql" else sqlite.insert
    return insert(table).values(**values).on_conflict_do_nothing(index_elements=keys)


_T = draft_ledger.c


def _is_key(key: DraftKey) -> sa.ColumnElement[bool]:
    return sa.and_(_T.scope == key.scope, _T.invoice_id == key.invoice_id, _T.stage == key.stage)


class SqlStore:
    """A store in the ledger's database; pass an Engine (``ledger.engine``) to share its pool."""

    def __init__(self, url: str | URL | Engine) -> None:
        self.engine = url if isinstance(url, Engine) else make_engine(url)


class SqlLedger(SqlStore):
    """The Ledger port on SQLite or PostgreSQL; safe across threads, processes and hosts.

    Times are the callers' aware ``now``: hosts sharing PostgreSQL need synchronised clocks,
    with leases far longer than any skew."""

    def claim_all(
        self,
        keys: Sequence[DraftKey],
        *,
        now: dt.datetime,
        lease_seconds: float,
        request_key: str | None = None,
    ) -> list[Claim]:
        """Claim a statement's keys in one transaction, or none (the others then answer BUSY)."""
        require_aware(now)
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        reservation = {
            "state": EntryState.RESERVED.value,
            "reserved_at": now,
            "lease_until": now + dt.timedelta(seconds=lease_seconds),
            "request_key": request_key,
            "updated_at": now,
        }
        # One order for every claimer: two statements over the same keys never deadlock.
        ordered = sorted(set(keys), key=astuple)
        with self.engine.connect() as conn, conn.begin() as transaction:
            claims = {key: self._claim(conn, key, now, reservation) for key in ordered}
            if any(c.outcome is not ClaimOutcome.CLAIMED for c in claims.values()):
                transaction.rollback()  # what this transaction claimed is free again
                for key, c in claims.items():
                    if c.outcome is ClaimOutcome.CLAIMED:
                        claims[key] = Claim(ClaimOutcome.BUSY, c.entry)
        return [claims[key] for key in keys]

    def _claim(
        self, conn: Connection, key: DraftKey, now: dt.datetime, reservation: dict[str, Any]
    ) -> Claim:
        values = {**asdict(key), "attempts": 0, "created_at": now, **reservation}
        # RETURNING, not rowcount: drivers report -1 for INSERT … ON CONFLICT DO NOTHING.
        insert = insert_ignoring_conflicts(conn, draft_ledger, values).returning(*_T)
        inserted = conn.execute(insert).mappings().first()
        if inserted is not None:
            return Claim(ClaimOutcome.CLAIMED, ledger_entry(inserted))

        # The key exists (rows are never deleted). On PostgreSQL the INSERT waited for any
        # concurrent inserter to commit, so this READ COMMITTED select sees its row.
        seen = self._fetch(conn, key)
        if seen.state is EntryState.CREATED:
            return Claim(ClaimOutcome.CREATED, seen)
        if seen.state is EntryState.FAILED:
            guard = _T.state == EntryState.FAILED.value
            recovered = False
        elif seen.lease_until < now:
            # The holder crashed (or is far too slow). Guarding on the lease we read means
            # only one of several recoverers changes the row; the others match nothing.
            guard = sa.and_(
                _T.state == EntryState.RESERVED.value, _T.lease_until == seen.lease_until
            )
            recovered = True
        else:
            return Claim(ClaimOutcome.BUSY, seen)

        # A conditional UPDATE is atomic per row on both backends (PostgreSQL re-checks the
        # WHERE on the newest row version after waiting for a concurrent writer's lock), so
        # a returned row tells that we, and nobody else, took the key over.
        update = sa.update(draft_ledger).where(_is_key(key), guard).values(reservation)
        taken = conn.execute(update.returning(*_T)).mappings().first()
        if taken is not None:
            return Claim(ClaimOutcome.CLAIMED, ledger_entry(taken), recovered=recovered)
        # Lost the race between our SELECT and UPDATE: someone else holds or finished it.
        current = self._fetch(conn, key)
        created = current.state is EntryState.CREATED
        return Claim(ClaimOutcome.CREATED if created else ClaimOutcome.BUSY, current)

    def record_created(
        self,
        key: DraftKey,
        created: CreatedDraft,
        *,
        drafted_on: dt.date,
        now: dt.datetime,
        subject: str | None = None,
        recipients: Sequence[str] = (),
    ) -> LedgerEntry:
        """Mark a claimed key as drafted with the sink's ids. The first draft recorded wins: a
        returned ``draft_id`` unlike the caller's tells of a duplicate."""
        require_aware(now)
        with self.engine.begin() as conn:
            # From reserved, or from failed: a holder whose create was slow but did succeed
            # after the key was marked failed still made the one real draft, so record it.
            conn.execute(
                sa.update(draft_ledger)
                .where(_is_key(key), _T.state != EntryState.CREATED.value)
                .values(
                    state=EntryState.CREATED.value,
                    draft_id=created.draft_id,
                    message_id=created.message_id,
                    thread_id=created.thread_id,
                    rfc_message_id=created.rfc_message_id,
                    draft_url=created.url,
                    drafted_on=drafted_on,
                    error=None,
                    updated_at=now,
                    subject=subject,
                    recipients=list(recipients) or None,
                    mailbox=created.mailbox,
                )
            )
            return self._fetch(conn, key)

    def record_failed(self, key: DraftKey, error: str, *, now: dt.datetime) -> LedgerEntry:
        """Release a claimed key as retryable after a failed create (no body in ``error``)."""
        require_aware(now)
        with self.engine.begin() as conn:
            # Only a live reservation fails: a key already drafted must never become claimable.
            conn.execute(
                sa.update(draft_ledger)
                .where(_is_key(key), _T.state == EntryState.RESERVED.value)
                .values(
                    state=EntryState.FAILED.value,
                    attempts=_T.attempts + 1,
                    error=error[:ERROR_MAX_CHARS],
                    updated_at=now,
                )
            )
            return self._fetch(conn, key)

    def get(self, key: DraftKey) -> LedgerEntry | None:
        """The entry for one key."""
        with read_connection(self.engine) as conn:
            row = conn.execute(sa.select(draft_ledger).where(_is_key(key))).mappings().first()
        return None if row is None else ledger_entry(row)

    def latest_created(self, scope: str, invoice_id: str, below_stage: int) -> LedgerEntry | None:
        """The most recent drafted stage below ``below_stage`` (for threading follow-ups)."""
        query = (
            sa.select(draft_ledger)
            .where(
                _T.scope == scope,
                _T.invoice_id == invoice_id,
                _T.stage < below_stage,
                _T.state == EntryState.CREATED.value,
            )
            .order_by(_T.stage.desc())
            .limit(1)
        )
        with read_connection(self.engine) as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else ledger_entry(row)

    @staticmethod
    def _fetch(conn: Connection, key: DraftKey) -> LedgerEntry:
        row = conn.execute(sa.select(draft_ledger).where(_is_key(key))).mappings().first()
        if row is None:
            raise LookupError(f"no ledger entry for {key.header_value()}")
        return ledger_entry(row)


_CONVERTED = ("key", "state", "recipients")  # the LedgerEntry fields not stored as they are


def ledger_entry(row: sa.RowMapping) -> LedgerEntry:
    """The LedgerEntry of a ``draft_ledger`` row."""
    return LedgerEntry(
        key=DraftKey(row["scope"], row["invoice_id"], row["stage"]),
        state=EntryState(row["state"]),
        recipients=tuple(row["recipients"] or ()),
        **{f.name: row[f.name] for f in fields(LedgerEntry) if f.name not in _CONVERTED},
    )
