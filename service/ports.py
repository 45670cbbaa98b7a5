"""The small interfaces the use cases talk to. Adapters implement them; tests use fakes.

Nothing here does I/O; types are frozen dataclasses, so they cross processes and threads safely.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from service.domain.invoice import Invoice

# The time source every use case and adapter takes, so tests can fix "now".
Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    """The real clock, timezone-aware."""
    return dt.datetime.now(dt.UTC)


KEY_HEADER = "X-Invoice-Collector-Key"  # every sink finds its drafts by this header


@dataclass(frozen=True)
class DraftKey:
    """The exactly-once key: one draft per (scope, invoice, stage), ever."""

    scope: str
    invoice_id: str
    stage: int

    def header_value(self) -> str:
        """The value of the KEY_HEADER header."""
        return f"{self.scope}/{self.invoice_id}/{self.stage}"


@dataclass(frozen=True)
class ThreadRef:
    """The earlier reminder a follow-up replies to (DESIGN §6)."""

    thread_id: str | None
    rfc_message_id: str | None  # the Message-ID header of the earlier draft
    subject: str | None = None


@dataclass(frozen=True)
class OutgoingDraft:
    """A rendered reminder, ready to become a draft. ``raw`` is the RFC 5322 message."""

    key: DraftKey
    to: tuple[str, ...]
    subject: str
    raw: bytes
    rfc_message_id: str
    thread: ThreadRef | None = None


@dataclass(frozen=True)
class CreatedDraft:
    """What a sink returns: ids to store and show; never the body."""

    draft_id: str
    message_id: str | None = None
    thread_id: str | None = None
    rfc_message_id: str | None = None
    url: str | None = None
    mailbox: str | None = None  # the address whose Drafts hold it (None: a local folder)


class SinkError(Exception):
    """A draft could not be created. ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool, code: str = "sink_error") -> None:
        super().__init__(message)
        self.retryable = retryable
        self.code = code


class AuthorizationError(SinkError):
    """The mailbox credentials are missing, expired or revoked: stop the run, re-authorise."""

    def __init__(self, message: str = "Gmail authorisation failed: re-authorise") -> None:
        super().__init__(message, retryable=False, code="reauthorize")


class OutcomeUnknown(SinkError):
    """The sink may have stored the draft (a 5xx, a timeout, a dropped connection): keep the key
    reserved; only a call that finds its lease expired looks the draft up, then adopts or
    creates it. Looking at once could miss it — Gmail's search index lags its store."""

    def __init__(self, message: str, code: str = "outcome_unknown") -> None:
        super().__init__(message, retryable=True, code=code)


class DraftSink(Protocol):
    """Where drafts go: Gmail, a Maildir, a fake."""

    @property
    def mailbox(self) -> str | None: ...

    def create(self, draft: OutgoingDraft) -> CreatedDraft:
        """Create one draft. Raises SinkError (or AuthorizationError)."""

    def find(self, draft: OutgoingDraft) -> CreatedDraft | None:
        """Find a draft made earlier for ``draft.key`` (crash reconciliation), or None."""

    def in_drafts(self, entry: LedgerEntry) -> bool:
        """True while the draft in ``entry`` still waits in Drafts (not sent, not deleted)."""


class EntryState(StrEnum):
    RESERVED = "reserved"
    CREATED = "created"
    FAILED = "failed"  # retryable: the next caller may claim it


@dataclass(frozen=True)
class LedgerEntry:
    """One row of the ledger (also the audit log): ids and metadata only, no bodies."""

    key: DraftKey
    state: EntryState
    reserved_at: dt.datetime
    lease_until: dt.datetime
    draft_id: str | None = None
    message_id: str | None = None
    thread_id: str | None = None
    rfc_message_id: str | None = None
    draft_url: str | None = None
    drafted_on: dt.date | None = None  # the spreadsheet's date of the run that drafted it
    request_key: str | None = None  # the Idempotency-Key of the request that created it
    error: str | None = None
    attempts: int = 0
    subject: str | None = None  # metadata for threading and review; the body is never kept
    recipients: tuple[str, ...] = ()
    mailbox: str | None = None  # whose Drafts hold it


class ClaimOutcome(StrEnum):
    CLAIMED = "claimed"  # the caller owns the key now and must create (or adopt) the draft
    CREATED = "created"  # already drafted: nothing to do (duplicate)
    BUSY = "busy"  # another caller holds a live reservation (duplicate / in progress)


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    entry: LedgerEntry
    # Taken over from a crashed holder (expired lease): look for the draft before creating it.
    recovered: bool = False


class Ledger(Protocol):
    """Exactly-once bookkeeping keyed by DraftKey; safe across threads, processes and hosts."""

    def claim_all(
        self,
        keys: Sequence[DraftKey],
        *,
        now: dt.datetime,
        lease_seconds: float,
        request_key: str | None = None,
    ) -> list[Claim]:
        """Reserve each key (a unique insert) or take over a failed or expired reservation;
        all in one transaction or none (the others then answer BUSY)."""

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
        """Mark a claimed key as drafted with the sink's ids (the first draft recorded wins)."""

    def record_failed(self, key: DraftKey, error: str, *, now: dt.datetime) -> LedgerEntry:
        """Release a claimed key as retryable after a failed create (no body in ``error``)."""

    def get(self, key: DraftKey) -> LedgerEntry | None: ...

    def latest_created(self, scope: str, invoice_id: str, below_stage: int) -> LedgerEntry | None:
        """The most recent drafted stage below ``below_stage`` (for threading follow-ups)."""


@dataclass(frozen=True)
class SourceRow:
    """A row as the source holds it: its 1-based sheet row number and its cells by header."""

    row: int
    values: Mapping[str, object]


@dataclass(frozen=True)
class SheetSnapshot:
    """Everything one read returned."""

    scope: str
    headers: tuple[str, ...]
    rows: tuple[SourceRow, ...]
    timezone: str | None = None  # the spreadsheet's own timezone when the source knows it


class RowsMoved(Exception):
    """Some results were not written back: their invoice left its row while the run drafted
    (the sheet sorted, a row deleted). The others were written; the next run writes these."""

    code = "rows_moved"

    def __init__(self, message: str, *, written: int) -> None:
        super().__init__(message)
        self.written = written


@dataclass(frozen=True)
class WriteBack:
    """The output cells of one row. Only these are ever written."""

    row: int
    last_stage_sent: int | None
    last_sent_at: dt.date | None
    reminder_status: str
    extra: Mapping[str, str] = field(default_factory=dict)  # e.g. {"payment_link": "https://…"}
    # The draft's link; each source shows it its own way (a HYPERLINK cell, text in a file).
    reminder_url: str | None = None


class InvoiceSource(Protocol):
    """Reads the invoices (the sheet, a file, QuickBooks) and writes back what was drafted."""

    def read(self) -> SheetSnapshot: ...

    def write_back(self, snapshot: SheetSnapshot, updates: Sequence[WriteBack]) -> int:
        """Write only changed output cells, in one request; returns the rows written."""


class RunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


FINISHED = frozenset({RunState.DONE, RunState.FAILED})


@dataclass(frozen=True)
class Run:
    """One headless run: its state, progress and per-row outcomes (never bodies)."""

    id: str
    scope: str
    state: RunState
    created_at: dt.datetime
    updated_at: dt.datetime
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    done: int = 0
    total: int = 0
    summary: Mapping[str, Any] = field(default_factory=dict)
    results: tuple[Mapping[str, Any], ...] = ()
    error: str | None = None


class RunStore(Protocol):
    """Where headless runs (/v1/runs) are recorded, so any instance can report on any run."""

    def create_run(self, scope: str, *, now: dt.datetime, total: int = 0) -> Run:
        """Store a new queued run and return it."""

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

    def get_run(self, run_id: str) -> Run | None: ...


@dataclass(frozen=True)
class DraftAlert:
    """One created draft as an alert shows it: ids and amounts, never the body."""

    invoice_id: str
    client_name: str
    stage: int
    balance: Decimal
    currency: str
    draft_url: str | None = None


class Notifier(Protocol):
    """Where a run reports its late, large drafts (Slack)."""

    def notify_run(self, drafts: Sequence[DraftAlert]) -> bool:
        """Send one alert for the qualifying drafts; True when one was delivered."""


@dataclass(frozen=True)
class PaymentLinkResult:
    """A link for an invoice's open balance, or why there is none (never both)."""

    url: str | None = None
    error: str | None = None


class PaymentLinks(Protocol):
    """Makes (or reuses) a Stripe payment link for what an invoice still owes."""

    def link_for(self, scope: str, invoice: Invoice) -> PaymentLinkResult:
        """The link for ``invoice``'s balance; failures come back as ``error``, never raised."""
