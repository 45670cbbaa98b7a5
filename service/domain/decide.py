"""The stage decision of DESIGN §4: pure, deterministic, tested to the day."""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from service.domain.calendar import BusinessCalendar
from service.domain.invoice import Invoice, RowError

DEFAULT_STAGES = (7, 14, 21, 28, 35, 42)
DEFAULT_CLOSED_STATUSES = frozenset(
    {"paid", "void", "cancelled", "canceled", "written off", "disputed", "on hold", "paused"}
)


class Action(StrEnum):
    DRAFT = "draft"
    SKIP = "skip"
    ERROR = "error"


class Reason(StrEnum):
    DUE = "due"
    CLOSED_STATUS = "closed_status"
    ZERO_BALANCE = "zero_balance"
    NOT_DUE = "not_due"
    ALREADY_DRAFTED_TODAY = "already_drafted_today"
    STAGE_ALREADY_DRAFTED = "stage_already_drafted"
    TOO_SOON = "too_soon"
    INVALID_ROW = "invalid_row"
    DUPLICATE_INVOICE_ID = "duplicate_invoice_id"
    TEMPLATE_ERROR = "template_error"
    DUPLICATE = "duplicate"  # another request drafted (or is drafting) this stage
    DRAFTED = "drafted"
    DRAFT_FAILED = "draft_failed"
    GMAIL_UNAUTHORIZED = "gmail_unauthorized"
    TIME_BUDGET = "time_budget"  # left for the next call: this one ran out of time
    PROMISED = "promised"  # the client promised to pay: wait until then (plus a grace)
    PAUSED = "paused"  # reminders paused until a date
    NOT_BUSINESS_DAY = "not_business_day"  # due today, drafted on the next business day
    CATCHING_UP = "catching_up"  # CATCH_UP=next: the stage after the last one drafted
    PREVIOUS_UNSENT = "previous_unsent"  # the last reminder still waits in Drafts
    PENDING = "pending"  # the create's outcome is unknown: looked for after the lease


class CatchUp(StrEnum):
    """After days without runs: draft the highest stage reached, or the one after the last."""

    LATEST = "latest"
    NEXT = "next"


@dataclass(frozen=True)
class Policy:
    """The settings the decision depends on."""

    stages: tuple[int, ...] = DEFAULT_STAGES  # a negative stage is a courtesy before due
    closed_statuses: frozenset[str] = DEFAULT_CLOSED_STATUSES
    min_gap_days: int = 0
    promise_grace_days: int = 1
    catch_up: CatchUp = CatchUp.LATEST
    calendar: BusinessCalendar | None = None  # None: any day is a drafting day

    def __post_init__(self) -> None:
        if not self.stages or 0 in self.stages:
            raise ValueError("stages are day counts from the due date, never 0")
        object.__setattr__(self, "stages", tuple(sorted(set(self.stages))))
        object.__setattr__(
            self, "closed_statuses", frozenset(_status_key(s) for s in self.closed_statuses)
        )


class Decision(NamedTuple):
    """What to do with one row today, and why."""

    action: Action
    reason: Reason
    days_overdue: int | None = None
    stage: int | None = None
    draft_on: dt.date | None = None  # not_business_day: the day it will be drafted


def _status_key(status: str) -> str:
    return " ".join(status.lower().replace("-", " ").replace("_", " ").split())


def _reached(days: int, stages: Sequence[int]) -> list[int]:
    # A courtesy stage (negative) is reached only before the due date: "due in 3 days" said on
    # the day it is due would be wrong. ``stages`` ascend (Policy sorts them).
    return [s for s in stages[: bisect_right(stages, days)] if s > 0 or days < 0]


def stage_for(days: int, stages: Sequence[int] = DEFAULT_STAGES) -> int | None:
    """The highest stage reached ``days`` after the due date (negative: before it), or None."""
    reached = _reached(days, stages)
    return reached[-1] if reached else None


def decide(invoice: Invoice, today: dt.date, policy: Policy) -> Decision:
    """The decision for one parsed invoice on ``today`` (the spreadsheet's date)."""
    days = (today - invoice.due_date).days
    overdue = max(0, days)
    reached = stage_for(days, policy.stages)
    if _status_key(invoice.status) in policy.closed_statuses:
        return Decision(Action.SKIP, Reason.CLOSED_STATUS, overdue, reached)
    if invoice.balance <= 0:
        return Decision(Action.SKIP, Reason.ZERO_BALANCE, overdue, reached)
    if reached is None:
        return Decision(Action.SKIP, Reason.NOT_DUE, overdue, None)
    if invoice.pause_until is not None and today < invoice.pause_until:
        return Decision(Action.SKIP, Reason.PAUSED, overdue, reached)
    # Days between dates, not date + grace: a promise dated 9999-12-31 must not overflow.
    promised = invoice.promised_date
    if promised is not None and (today - promised).days < policy.promise_grace_days:
        return Decision(Action.SKIP, Reason.PROMISED, overdue, reached)
    last_sent, gap = invoice.last_sent_at, policy.min_gap_days
    if last_sent == today:
        return Decision(Action.SKIP, Reason.ALREADY_DRAFTED_TODAY, overdue, reached)
    last = invoice.last_stage_sent
    if policy.catch_up is CatchUp.NEXT:  # the first stage after the last one drafted
        stage = next((s for s in _reached(days, policy.stages) if last is None or s > last), None)
    else:
        stage = reached if last is None or last < reached else None
    if stage is None:
        return Decision(Action.SKIP, Reason.STAGE_ALREADY_DRAFTED, overdue, reached)
    if gap > 0 and last_sent is not None and (today - last_sent).days < gap:
        return Decision(Action.SKIP, Reason.TOO_SOON, overdue, stage)
    calendar = policy.calendar
    if calendar is not None and not calendar.is_business_day(today):
        # The stage waits, not skipped: a later run drafts it (nothing was written back today).
        later = calendar.next_business_day(today)
        return Decision(Action.SKIP, Reason.NOT_BUSINESS_DAY, overdue, stage, later)
    reason = Reason.DUE if stage == reached else Reason.CATCHING_UP
    return Decision(Action.DRAFT, reason, overdue, stage)


def duplicate_ids(rows: Iterable[Invoice | RowError]) -> dict[str, list[int | None]]:
    """The rows of each invoice id that appears on more than one (each copy is an error)."""
    rows_of: defaultdict[str, list[int | None]] = defaultdict(list)
    for r in rows:
        if r.invoice_id:
            rows_of[r.invoice_id].append(r.row)
    return {invoice_id: rows for invoice_id, rows in rows_of.items() if len(rows) > 1}
