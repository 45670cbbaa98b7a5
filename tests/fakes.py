"""In-memory fakes of our own ports, for unit tests (HOUSE_STYLE: fakes, not mocks)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from dataclasses import replace

from service.domain.invoice import INPUT_FIELDS, normalize_header
from service.ports import (
    Claim,
    ClaimOutcome,
    CreatedDraft,
    DraftAlert,
    DraftKey,
    EntryState,
    LedgerEntry,
    OutcomeUnknown,
    OutgoingDraft,
    SheetSnapshot,
    SinkError,
    SourceRow,
    WriteBack,
)

# What SqlLedger keeps of an error text; the contract test holds the two to the same rules.
ERROR_MAX_CHARS = 1_000


def _aware_utc(value: dt.datetime) -> dt.datetime:
    """``value`` in UTC; a naive time is refused, as SqlLedger refuses it."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("datetimes given to the ledger must be timezone-aware")
    return value.astimezone(dt.UTC)


class FakeLedger:
    """The Ledger protocol over a dict, keeping the SQL ledger's rules (tests/integration/
    test_ledger_contract.py runs the same scenarios on both): a created draft is final — a
    later failure does not release it and a second record does not replace its ids — and
    only a live reservation can fail."""

    def __init__(self) -> None:
        self.entries: dict[DraftKey, LedgerEntry] = {}
        self._lock = threading.RLock()  # claim_all claims under it

    def _claim(
        self, key: DraftKey, now: dt.datetime, lease: dt.datetime, request_key: str | None
    ) -> Claim:
        """Reserve ``key``, or take over a failed or expired reservation (claim_all locks)."""
        entry = self.entries.get(key)
        if entry is None:
            entry = LedgerEntry(key, EntryState.RESERVED, now, lease, request_key=request_key)
            self.entries[key] = entry
            return Claim(ClaimOutcome.CLAIMED, entry)
        if entry.state is EntryState.CREATED:
            return Claim(ClaimOutcome.CREATED, entry)
        if entry.state is EntryState.FAILED or entry.lease_until < now:
            recovered = entry.state is EntryState.RESERVED
            entry = replace(
                entry,
                state=EntryState.RESERVED,
                reserved_at=now,
                lease_until=lease,
                request_key=request_key,
            )
            self.entries[key] = entry
            return Claim(ClaimOutcome.CLAIMED, entry, recovered=recovered)
        return Claim(ClaimOutcome.BUSY, entry)

    def claim_all(
        self,
        keys: Sequence[DraftKey],
        *,
        now: dt.datetime,
        lease_seconds: float,
        request_key: str | None = None,
    ) -> list[Claim]:
        """Claim every key or none, as one transaction (the others then answer BUSY)."""
        now = _aware_utc(now)
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        lease = now + dt.timedelta(seconds=lease_seconds)
        with self._lock:
            before = dict(self.entries)
            ordered = sorted(set(keys), key=lambda k: (k.scope, k.invoice_id, k.stage))
            claims = {k: self._claim(k, now, lease, request_key) for k in ordered}
            if any(c.outcome is not ClaimOutcome.CLAIMED for c in claims.values()):
                self.entries = before  # rolled back
                claims = {
                    k: c
                    if c.outcome is not ClaimOutcome.CLAIMED
                    else Claim(ClaimOutcome.BUSY, c.entry)
                    for k, c in claims.items()
                }
            return [claims[k] for k in keys]

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
        """Mark a reserved (or failed) key as drafted; a created one keeps its first ids."""
        _aware_utc(now)
        with self._lock:
            entry = self._existing(key)
            if entry.state is EntryState.CREATED:
                return entry
            entry = replace(
                entry,
                state=EntryState.CREATED,
                draft_id=created.draft_id,
                message_id=created.message_id,
                thread_id=created.thread_id,
                rfc_message_id=created.rfc_message_id,
                draft_url=created.url,
                drafted_on=drafted_on,
                error=None,
                subject=subject,
                recipients=tuple(recipients),
                mailbox=created.mailbox,
            )
            self.entries[key] = entry
            return entry

    def record_failed(self, key: DraftKey, error: str, *, now: dt.datetime) -> LedgerEntry:
        """Release a live reservation as retryable; any other state is left as it is."""
        _aware_utc(now)
        with self._lock:
            entry = self._existing(key)
            if entry.state is not EntryState.RESERVED:
                return entry
            entry = replace(
                entry,
                state=EntryState.FAILED,
                error=error[:ERROR_MAX_CHARS],
                attempts=entry.attempts + 1,
            )
            self.entries[key] = entry
            return entry

    def get(self, key: DraftKey) -> LedgerEntry | None:
        """The entry for one key."""
        return self.entries.get(key)

    def latest_created(self, scope: str, invoice_id: str, below_stage: int) -> LedgerEntry | None:
        """The highest drafted stage below ``below_stage``."""
        found = [
            e
            for k, e in self.entries.items()
            if k.scope == scope
            and k.invoice_id == invoice_id
            and k.stage < below_stage
            and e.state is EntryState.CREATED
        ]
        return max(found, key=lambda e: e.key.stage, default=None)

    def _existing(self, key: DraftKey) -> LedgerEntry:
        entry = self.entries.get(key)
        if entry is None:
            raise LookupError(f"no ledger entry for {key.header_value()}")
        return entry


class FakeSink:
    """A DraftSink that keeps drafts in a list; failures are scripted per call."""

    def __init__(self) -> None:
        self.drafts: list[OutgoingDraft] = []
        self.ids: dict[str, CreatedDraft] = {}
        self.failures: list[Exception] = []  # raised (first in, first out) by create()
        self.find_failures: list[Exception] = []  # raised (first in, first out) by find()
        self.answers_lost = 0  # the next creates store the draft, then raise OutcomeUnknown
        self.create_calls = 0
        self.find_calls = 0
        self.in_drafts_calls = 0
        self.sent: set[str] = set()  # draft ids the bookkeeper sent (they left Drafts)
        self.mailbox: str | None = None
        # Drafting runs on DRAFT_CONCURRENCY threads; Gmail answers each call atomically.
        self._lock = threading.Lock()

    def create(self, draft: OutgoingDraft) -> CreatedDraft:
        with self._lock:
            self.create_calls += 1
            if self.failures:
                raise self.failures.pop(0)
            self.drafts.append(draft)
            n = len(self.drafts)
            thread = draft.thread.thread_id if draft.thread and draft.thread.thread_id else f"t{n}"
            created = CreatedDraft(
                f"d{n}", f"m{n}", thread, draft.rfc_message_id, f"https://x/{n}", self.mailbox
            )
            self.ids[draft.key.header_value()] = created
            if self.answers_lost:  # Gmail's 500 after storing: the draft exists, nobody was told
                self.answers_lost -= 1
                raise OutcomeUnknown(
                    "stored, but the answer was lost", code="gmail_outcome_unknown"
                )
            return created

    def find(self, draft: OutgoingDraft) -> CreatedDraft | None:
        with self._lock:
            self.find_calls += 1
            if self.find_failures:
                raise self.find_failures.pop(0)
            return self.ids.get(draft.key.header_value())

    def in_drafts(self, entry: LedgerEntry) -> bool:
        with self._lock:
            self.in_drafts_calls += 1
            return entry.draft_id in {c.draft_id for c in self.ids.values()} - self.sent

    def send(self, draft_id: str) -> None:
        """The bookkeeper sent it: it left Drafts."""
        with self._lock:
            self.sent.add(draft_id)

    def keys(self) -> list[str]:
        return [d.key.header_value() for d in self.drafts]


def transient(message: str = "backend error") -> SinkError:
    return SinkError(message, retryable=True, code="unavailable")


_INPUT_KEYS = frozenset(normalize_header(name) for name in INPUT_FIELDS)


class FakeSource:
    """An InvoiceSource over in-memory rows; write-backs change the rows and are recorded."""

    def __init__(
        self,
        rows: list[dict[str, object]],
        *,
        scope: str = "fake-sheet",
        timezone: str | None = None,
    ) -> None:
        self.rows = [dict(r) for r in rows]
        self.scope = scope
        self.timezone = timezone
        self.reads = 0
        self.writes: list[list[WriteBack]] = []  # one entry per write_back call that wrote
        self.fail_write: Exception | None = None

    def read(self) -> SheetSnapshot:
        self.reads += 1
        rows = tuple(SourceRow(row=n, values=dict(r)) for n, r in enumerate(self.rows, start=2))
        headers = tuple(self.rows[0]) if self.rows else ()
        return SheetSnapshot(self.scope, headers, rows, self.timezone)

    def write_back(self, snapshot: SheetSnapshot, updates: Sequence[WriteBack]) -> int:
        """Change only the output cells (and extras) that differ, as the real sources do."""
        if snapshot.scope != self.scope:
            raise ValueError(f"snapshot of {snapshot.scope!r} given to {self.scope!r}")
        if self.fail_write is not None:
            raise self.fail_write
        for u in updates:
            if not 2 <= u.row < len(self.rows) + 2:
                raise ValueError(f"row {u.row} is not an invoice row of this snapshot")
            for name in u.extra:
                # The invoice's own data is the bookkeeper's: a write-back never rewrites it.
                if normalize_header(name) in _INPUT_KEYS:
                    raise ValueError(f"write-back extra {name!r} would overwrite an input column")
        changed = 0
        for u in updates:
            row = self.rows[u.row - 2]
            cells = {
                "last_stage_sent": "" if u.last_stage_sent is None else str(u.last_stage_sent),
                "last_sent_at": "" if u.last_sent_at is None else u.last_sent_at.isoformat(),
                "reminder_status": u.reminder_status,
                **u.extra,
            }
            if any(row.get(k, "") != v for k, v in cells.items()):
                row.update(cells)
                changed += 1
        if changed:
            self.writes.append(list(updates))
        return changed


class FakeNotifier:
    """A RunNotifier that keeps every alert it was asked to send."""

    def __init__(self) -> None:
        self.calls: list[list[DraftAlert]] = []

    def notify_run(self, drafts: Sequence[DraftAlert]) -> bool:
        self.calls.append(list(drafts))
        return True
