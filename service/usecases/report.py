"""Rows and summaries as JSON-ready dicts, shared by the API, the CLI and recorded runs.

The API's marshmallow schemas (service/api/schemas.py) describe and serialise these shapes.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from service.domain.aging import aging
from service.domain.decide import Action, Reason
from service.domain.money import format_money
from service.usecases.drafts import DraftOutcome
from service.usecases.plan import PlannedRow

# Plain words for the bookkeeper; {stage} and {days} are filled in.
REASON_TEXT: Mapping[Reason, str] = {
    Reason.DUE: "Stage {stage} reminder is due ({days} days overdue).",
    Reason.CLOSED_STATUS: "Skipped: the status says this invoice is closed.",
    Reason.ZERO_BALANCE: "Skipped: nothing is left to pay.",
    Reason.NOT_DUE: "Not yet due for a reminder ({days} days overdue).",
    Reason.ALREADY_DRAFTED_TODAY: "Skipped: a reminder was already drafted today.",
    Reason.STAGE_ALREADY_DRAFTED: "Skipped: the stage {stage} reminder was already drafted.",
    Reason.TOO_SOON: "Skipped: the last reminder was too recent.",
    Reason.INVALID_ROW: "This row has a problem: {errors}",
    Reason.DUPLICATE_INVOICE_ID: "This invoice ID appears on more than one row.",
    Reason.TEMPLATE_ERROR: "The stage {stage} template is broken: {errors}",
    Reason.DUPLICATE: "Already drafted for stage {stage} by an earlier request.",
    Reason.DRAFTED: "Drafted stage {stage} reminder ({days} days overdue).",
    Reason.DRAFT_FAILED: "The draft could not be created: {errors}",
    Reason.GMAIL_UNAUTHORIZED: "Gmail permission is missing or expired: re-authorise.",
    Reason.TIME_BUDGET: "Not drafted yet: this call ran out of time; the next call drafts it.",
    Reason.PROMISED: "Skipped: the client promised to pay; reminders resume after that date.",
    Reason.PAUSED: "Skipped: reminders are paused for this invoice.",
    Reason.NOT_BUSINESS_DAY: "Stage {stage} is due; it is drafted on the next business day.",
    Reason.PREVIOUS_UNSENT: "Waiting: the last reminder is still in Drafts, unsent.",
    Reason.PENDING: "Not confirmed yet: Gmail may have made the draft; a later run checks.",
    Reason.CATCHING_UP: "Stage {stage} is next ({days} days overdue): no step is skipped.",
}


def reason_message(reason: Reason, stage: int | None, days: int | None, errors: str | None) -> str:
    """The plain-words explanation of a reason."""
    if reason is Reason.NOT_DUE and not days:
        return "Not overdue yet."
    return REASON_TEXT[reason].format(stage=stage, days=days, errors=errors or "")


def planned_row_dict(
    item: PlannedRow, *, locale: str = "en_US", with_body: bool = True
) -> dict[str, Any]:
    """A plan row as the API returns it."""
    d, errors = item.decision, item.errors
    detail = "; ".join(f"{k}: {v}" for k, v in (errors or {}).items())
    out: dict[str, Any] = {
        "row": item.row,
        "invoice_id": item.invoice_id,
        "days_overdue": d.days_overdue,
        "stage": d.stage,
        # Action and Reason are StrEnums: strings already, written as their values.
        "action": d.action,
        "reason": d.reason,
        "message": reason_message(d.reason, d.stage, d.days_overdue, detail),
    }
    inv = item.invoice
    if inv is not None:
        out["client_name"] = inv.client_name
        out["to"] = inv.client_emails
        out["currency"] = inv.currency
        out["balance"] = str(inv.balance)
        out["amount_formatted"] = format_money(inv.amount, inv.currency, locale)
    if errors:
        out["errors"] = dict(errors)
    if item.fix:
        out["fix"] = item.fix
    if d.draft_on is not None:
        out["draft_on"] = d.draft_on
    email = item.email
    if email is not None:
        out["subject"] = email.subject
        if with_body:
            out["body"] = email.body
    return out


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Counts by action and by reason."""
    actions = Counter(row["action"] for row in rows)
    reasons = Counter(row["reason"] for row in rows)
    return {
        "total": len(rows),
        "draft": actions[Action.DRAFT.value],
        "skip": actions[Action.SKIP.value],
        "error": actions[Action.ERROR.value],
        "by_reason": dict(sorted(reasons.items())),
    }


_NOT_CHASED = frozenset({Reason.CLOSED_STATUS, Reason.ZERO_BALANCE})


def overdue_totals(items: Iterable[PlannedRow], locale: str) -> list[dict[str, Any]]:
    """Count and open balance of overdue, still-chased invoices per currency."""
    balances: defaultdict[str, list[Decimal]] = defaultdict(list)
    for item in items:
        inv, d = item.invoice, item.decision
        chased = d.reason not in _NOT_CHASED and d.action is not Action.ERROR
        if inv is not None and d.days_overdue and chased:
            balances[inv.currency].append(inv.balance)
    totals = {currency: sum(values, Decimal(0)) for currency, values in balances.items()}
    return [
        {
            "currency": currency,
            "count": len(balances[currency]),
            "balance": str(total),
            "balance_formatted": format_money(total, currency, locale),
        }
        for currency, total in sorted(totals.items())
    ]


def outcome_row_dict(
    outcome: DraftOutcome, *, locale: str = "en_US", with_body: bool = True
) -> dict[str, Any]:
    """A drafts row: the plan row plus what drafting did, the draft's ids and the write-back."""
    item = outcome.planned
    out = planned_row_dict(item, locale=locale, with_body=with_body)
    d = item.decision
    out["action"] = outcome.action.value
    out["reason"] = outcome.reason.value
    if outcome.reason is not d.reason:
        out["message"] = reason_message(outcome.reason, d.stage, d.days_overdue, outcome.error)
    if outcome.error and outcome.reason is not Reason.GMAIL_UNAUTHORIZED:
        out.setdefault("errors", {})["draft"] = outcome.error
    if outcome.retryable is not None:
        out["retryable"] = outcome.retryable
    entry = outcome.entry
    if entry is not None and entry.draft_id is not None:
        out["draft_id"] = entry.draft_id
        out["message_id"] = entry.message_id
        out["thread_id"] = entry.thread_id
        out["draft_url"] = entry.draft_url
    waiting = outcome.waiting
    if waiting is not None:
        # The unsent draft: its link, so the bookkeeper can send it, and how long it waits.
        out["draft_url"] = waiting.draft_url
        out["waiting_since"] = waiting.drafted_on
    if outcome.drafted_by and entry is not None:
        # A teammate's draft: a link into their mailbox would not open for this user.
        day = entry.drafted_on.isoformat() if entry.drafted_on else "an earlier day"
        out["drafted_by"] = outcome.drafted_by
        out["draft_url"] = None
        out["message"] = (
            f"Already drafted for stage {entry.key.stage} by {outcome.drafted_by} on {day}: "
            f"it waits in {outcome.drafted_by}'s Gmail Drafts."
        )
    if outcome.payment_link:
        out["payment_link"] = outcome.payment_link
    if outcome.payment_link_error:
        # The draft exists without a link: the row says why, so the bookkeeper can add one.
        out.setdefault("errors", {})["payment_link"] = outcome.payment_link_error
        out["message"] = f"{out['message']} No payment link: {outcome.payment_link_error}"
    wb = outcome.writeback
    if wb is not None:
        out["writeback"] = {
            "last_stage_sent": wb.last_stage_sent,
            "last_sent_at": wb.last_sent_at.isoformat() if wb.last_sent_at else None,
            "reminder_status": wb.reminder_status,
        }
    return out


def aging_report(items: Iterable[PlannedRow], today: dt.date, locale: str) -> list[dict[str, Any]]:
    """Open balances by age, the largest overdue clients and DSO, per currency."""
    pairs = [
        (item.invoice, item.decision.reason not in _NOT_CHASED)
        for item in items
        if item.invoice is not None and item.decision.action is not Action.ERROR
    ]
    out = []
    for currency, a in aging(pairs, today).items():

        def money(amount: Decimal, currency: str = currency) -> dict[str, str]:
            return {"amount": str(amount), "formatted": format_money(amount, currency, locale)}

        dso = a.dso
        note = "nothing invoiced in the last 90 days" if a.dated else "needs sent_date"
        out.append(
            {
                "currency": currency,
                "buckets": [{"bucket": label, **money(v)} for label, v in a.buckets.items()],
                "open": money(a.open_balance),
                "top_clients": [{"client_name": name, **money(v)} for name, v in a.top_clients()],
                "dso_days": None if dso is None else str(dso),
                "dso_note": None if dso is not None else note,
            }
        )
    return out
