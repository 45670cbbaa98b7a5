"""The stage decision of DESIGN §4: pure, deterministic, tested to the day."""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from service.domain.invoice import Invoice, RowError

DEFAULT_STAGES = (7, 14, 21, 28, 35, 42)
DEFAULT_CLOSED_STATUSES = frozenset(
    {
        "paid",
        "void",
        "cancelled",
        "canceled",
        "written off",
        "disputed",
        "on hold",
        "paused",
    }
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


@dataclass(frozen=True)
class Policy:
    """The settings the decision depends on."""

    stages: tuple[int, ...] = DEFAULT_STAGES
    closed_statuses: frozenset[str] = DEFAULT_CLOSED_STATUSES
    min_gap_days: int = 0

    def __post_init__(self) -> None:
        if not self.stages or any(s <= 0 for s in self.stages):
            raise ValueError("stages must be positive day counts")
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


def _status_key(status: str) -> str:
    return " ".join(status.lower().replace("-", " ").replace("_", " ").split())


def days_overdue(due_date: dt.date, today: dt.date) -> int:
    """Whole days past due; 0 on or before the due date."""
    return max(0, (today - due_date).days)


def stage_for(days: int, stages: Sequence[int] = DEFAULT_STAGES) -> int | None:
    """The highest stage reached after ``days`` overdue, or None before the first.

    ``stages`` ascend (Policy sorts them).
    """
    reached = bisect_right(stages, days)
    return stages[reached - 1] if reached else None


def decide(invoice: Invoice, today: dt.date, policy: Policy) -> Decision:
    """The decision for one parsed invoice on ``today`` (the spreadsheet's date)."""
    days = days_overdue(invoice.due_date, today)
    stage = stage_for(days, policy.stages)
    if _status_key(invoice.status) in policy.closed_statuses:
        return Decision(Action.SKIP, Reason.CLOSED_STATUS, days, stage)
    if invoice.balance <= 0:
        return Decision(Action.SKIP, Reason.ZERO_BALANCE, days, stage)
    if stage is None:
        return Decision(Action.SKIP, Reason.NOT_DUE, days, None)
    if invoice.last_sent_at == today:
        return Decision(Action.SKIP, Reason.ALREADY_DRAFTED_TODAY, days, stage)
    if invoice.last_stage_sent is not None and invoice.last_stage_sent >= stage:
        return Decision(Action.SKIP, Reason.STAGE_ALREADY_DRAFTED, days, stage)
    if (
        policy.min_gap_days > 0
        and invoice.last_sent_at is not None
        and (today - invoice.last_sent_at).days < policy.min_gap_days
    ):
        return Decision(Action.SKIP, Reason.TOO_SOON, days, stage)
    return Decision(Action.DRAFT, Reason.DUE, days, stage)


def duplicate_ids(rows: Iterable[Invoice | RowError]) -> set[str]:
    """Invoice ids that appear on more than one row (each copy is an error)."""
    counts = Counter(r.invoice_id for r in rows)
    return {invoice_id for invoice_id, n in counts.items() if n > 1 and invoice_id}
