"""The other two tables beside the ledger: headless runs (``/v1/runs``) and payment links.

They share the engine and metadata of ``ledger_sql``; pass ``ledger.engine`` to reuse a pool.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from service.adapters.ledger_sql import (
    ERROR_MAX_CHARS,
    insert_ignoring_conflicts,
    make_engine,
    payment_links,
    read_connection,
    require_aware,
    runs,
)
from service.ports import FINISHED, Run, RunState

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


def _engine(url: str | URL | Engine) -> Engine:
    return url if isinstance(url, Engine) else make_engine(url)


def strip_bodies(value: Any) -> Any:
    """``value`` with every ``BODY_KEYS`` entry removed from the mappings inside it."""
    if isinstance(value, Mapping):
        return {k: strip_bodies(v) for k, v in value.items() if k not in BODY_KEYS}
    if isinstance(value, list | tuple):
        return [strip_bodies(v) for v in value]
    return value


class SqlRuns:
    """Headless runs stored in the ``runs`` table."""

    def __init__(self, url: str | URL | Engine) -> None:
        self.engine = _engine(url)

    def create_run(self, scope: str, *, now: dt.datetime, total: int = 0) -> Run:
        """Store a new queued run and return it."""
        run_id = uuid.uuid4()
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(runs).values(
                    id=run_id,
                    scope=scope,
                    state=RunState.QUEUED.value,
                    created_at=require_aware(now),
                    updated_at=now,
                    progress_done=0,
                    progress_total=total,
                    summary={},
                    results=[],
                )
            )
            return self._fetch(conn, run_id)

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
        with self.engine.begin() as conn:
            current = self._fetch(conn, parsed)
            if current.state in FINISHED:
                raise ValueError(f"run {run_id} is already {current.state}")
            values: dict[str, Any] = {"updated_at": now}
            if state is not None:
                values["state"] = state.value
                if state is RunState.RUNNING and current.started_at is None:
                    values["started_at"] = now
                if state in FINISHED:
                    values["finished_at"] = now
                    values.setdefault("started_at", current.started_at or now)
            if done is not None:
                values["progress_done"] = done
            if total is not None:
                values["progress_total"] = total
            if summary is not None:
                values["summary"] = strip_bodies(summary)
            if results is not None:
                values["results"] = strip_bodies(list(results))
            if error is not None:
                values["error"] = error[:ERROR_MAX_CHARS]
            conn.execute(sa.update(runs).where(runs.c.id == parsed).values(values))
            return self._fetch(conn, parsed)

    def get_run(self, run_id: str) -> Run | None:
        """The run with this id, or None (also for an id that is not a UUID)."""
        parsed = _parse_id(run_id)
        if parsed is None:
            return None
        with read_connection(self.engine) as conn:
            row = conn.execute(sa.select(runs).where(runs.c.id == parsed)).mappings().first()
        return None if row is None else _run(row)

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
        id=str(row["id"]),
        scope=row["scope"],
        state=RunState(row["state"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        done=row["progress_done"],
        total=row["progress_total"],
        summary=row["summary"] or {},
        results=tuple(row["results"] or ()),
        error=row["error"],
    )


class SqlPaymentLinks:
    """Payment links in the ``payment_links`` table, one per (scope, invoice, currency, amount)."""

    def __init__(self, url: str | URL | Engine) -> None:
        self.engine = _engine(url)

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
        return None if row is None else _link(row)

    def save_payment_link(self, link: PaymentLink) -> PaymentLink:
        """Store ``link`` unless one exists for the same balance; return the stored one.

        The first writer wins, so two workers that raced to make a link both use the same one.
        """
        values = {
            "scope": link.scope,
            "invoice_id": link.invoice_id,
            "currency": link.currency.upper(),
            "amount_minor": link.amount_minor,
            "url": link.url,
            "provider_id": link.provider_id,
            "created_at": require_aware(link.created_at),
        }
        with self.engine.begin() as conn:
            conn.execute(insert_ignoring_conflicts(conn, payment_links, values))
        stored = self.get_payment_link(
            link.scope, link.invoice_id, link.currency, link.amount_minor
        )
        if stored is None:  # rows are never deleted; this would be a broken database
            raise LookupError("payment link vanished after insert")
        return stored


def _link(row: sa.RowMapping) -> PaymentLink:
    return PaymentLink(
        scope=row["scope"],
        invoice_id=row["invoice_id"],
        currency=row["currency"],
        amount_minor=row["amount_minor"],
        url=row["url"],
        provider_id=row["provider_id"],
        created_at=row["created_at"],
    )
