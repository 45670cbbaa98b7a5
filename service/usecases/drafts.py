"""generate_drafts(): the exactly-once flow of DESIGN §7 over planned rows.

For each row to draft: claim the (scope, invoice, stage) key in the ledger → create the draft
(or, when the key was left by a crashed holder, adopt the draft it may already have made) →
record its ids. A caller that loses the claim reports the row as a duplicate. A failed
create releases the key as retryable. No email body is stored or logged anywhere here.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from service.domain.decide import Action, Reason
from service.ports import (
    AuthorizationError,
    ClaimOutcome,
    Clock,
    CreatedDraft,
    DraftKey,
    DraftSink,
    Ledger,
    LedgerEntry,
    OutgoingDraft,
    PaymentLinkResult,
    PaymentLinks,
    SinkError,
    ThreadRef,
    WriteBack,
)
from service.rendering import RenderSettings, TemplateSet
from service.usecases.message import HeaderInjectionError, build_draft
from service.usecases.plan import PlannedRow, render_email

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DraftSettings:
    """What the drafting flow needs from the configuration."""

    sender: str | None  # None: the mailbox's own address (Gmail fills in From)
    sender_domain: str
    render: RenderSettings = field(default_factory=RenderSettings)
    lease_seconds: float = 120.0
    thread_followups: bool = False
    # Drafts in flight at once. Each draft is two durable ledger commits and a Gmail round
    # trip; overlapping them lets one mailbox reach its quota's pace (the pacer holds the rate).
    concurrency: int = 1
    # No new draft is started after this many seconds of one call (None: no limit), so a
    # sidebar chunk answers before the web worker's timeout; the rest come back as
    # `time_budget` rows for the next call.
    time_budget_seconds: float | None = None


def reminder_status(stage: int, days: int | None, drafted_on: dt.date) -> str:
    """The text written next to a row once its draft exists."""
    return f"Drafted stage {stage} reminder ({days} days overdue) on {drafted_on.isoformat()}"


@dataclass(frozen=True)
class DraftOutcome:
    """What happened to one planned row."""

    planned: PlannedRow
    action: Action
    reason: Reason
    entry: LedgerEntry | None = None
    error: str | None = None
    retryable: bool | None = None
    adopted: bool = False
    replayed: bool = False  # answered from the ledger for a repeated Idempotency-Key
    payment_link: str | None = None  # the link merged into this draft, when there is one
    payment_link_error: str | None = None  # why the draft went out without one

    @property
    def writeback(self) -> WriteBack | None:
        """The output cells for the row, once its draft exists."""
        e = self.entry
        if e is None or e.draft_id is None or self.planned.row is None:
            return None
        drafted_on = e.drafted_on or e.reserved_at.date()
        status = reminder_status(e.key.stage, self.planned.decision.days_overdue, drafted_on)
        if self.payment_link_error:
            status = f"{status}; no payment link: {self.payment_link_error}"
        return WriteBack(
            row=self.planned.row,
            last_stage_sent=e.key.stage,
            last_sent_at=drafted_on,
            reminder_status=status,
            extra={"payment_link": self.payment_link} if self.payment_link else {},
            reminder_url=e.draft_url,
        )


@dataclass(frozen=True)
class GenerateResult:
    outcomes: list[DraftOutcome]
    stopped: str | None = None  # "gmail_unauthorized" when the mailbox refused us

    @property
    def drafted(self) -> int:
        """Rows whose draft was created (or adopted) by this call."""
        return sum(1 for o in self.outcomes if o.reason is Reason.DRAFTED)

    @property
    def remaining(self) -> int:
        """Rows due a draft that this call left for the next one (its time budget ran out)."""
        return sum(1 for o in self.outcomes if o.reason is Reason.TIME_BUDGET)


@dataclass
class _Run:
    scope: str
    today: dt.date
    ledger: Ledger
    sink: DraftSink
    settings: DraftSettings
    templates: TemplateSet
    clock: Clock
    request_key: str | None
    payment_links: PaymentLinks | None = None


def generate_drafts(
    planned: Sequence[PlannedRow],
    *,
    scope: str,
    today: dt.date,
    ledger: Ledger,
    sink: DraftSink,
    settings: DraftSettings,
    templates: TemplateSet,
    clock: Clock,
    request_key: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_created: Callable[[DraftOutcome], None] | None = None,
    payment_links: PaymentLinks | None = None,
    timer: Callable[[], float] = time.monotonic,
) -> GenerateResult:
    """Create a draft for every planned `draft` row, at most once per (scope, invoice, stage).

    Each draft's email is rendered here, once, after its key is claimed. With
    ``payment_links``, each draft this call creates carries a link for the open balance; a
    link that cannot be made leaves the draft without one and says why on its row.
    """
    run = _Run(scope, today, ledger, sink, settings, templates, clock, request_key, payment_links)
    outcomes: list[DraftOutcome | None] = [None] * len(planned)
    todo: list[int] = []
    for i, item in enumerate(planned):
        if item.is_draft:
            todo.append(i)
        else:
            outcomes[i] = DraftOutcome(item, item.decision.action, item.decision.reason)
    stop = threading.Event()
    budget = settings.time_budget_seconds
    ends = None if budget is None else timer() + budget

    def work(item: PlannedRow) -> DraftOutcome:
        if stop.is_set():  # the mailbox refused us: try nothing more this run
            return DraftOutcome(item, Action.ERROR, Reason.GMAIL_UNAUTHORIZED, retryable=True)
        if ends is not None and timer() >= ends:
            return DraftOutcome(item, Action.SKIP, Reason.TIME_BUDGET, retryable=True)
        try:
            return _draft_one(run, item)
        except AuthorizationError as exc:
            stop.set()
            return DraftOutcome(
                item, Action.ERROR, Reason.GMAIL_UNAUTHORIZED, error=str(exc), retryable=True
            )

    items = [planned[i] for i in todo]
    pool: ThreadPoolExecutor | None = None
    results: Iterator[DraftOutcome]
    if settings.concurrency > 1 and len(items) > 1:
        pool = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="draft")
        results = pool.map(work, items)
    else:
        results = map(work, items)
    try:
        for done, (i, outcome) in enumerate(zip(todo, results, strict=True), start=1):
            outcomes[i] = outcome
            if on_created is not None and outcome.reason is Reason.DRAFTED and not outcome.replayed:
                on_created(outcome)
            if on_progress is not None:
                on_progress(done, len(todo))
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    final = [o for o in outcomes if o is not None]
    return GenerateResult(final, Reason.GMAIL_UNAUTHORIZED.value if stop.is_set() else None)


def _draft_one(run: _Run, item: PlannedRow) -> DraftOutcome:
    assert item.invoice is not None and item.decision.stage is not None
    key = DraftKey(run.scope, item.invoice_id, item.decision.stage)
    claim = run.ledger.claim(
        key, now=run.clock(), lease_seconds=run.settings.lease_seconds, request_key=run.request_key
    )
    if claim.outcome is ClaimOutcome.CREATED:
        # Drafted before. A replay of the same request (same Idempotency-Key) answers as the
        # first did; anyone else learns it is a duplicate — with the draft's ids either way.
        replay = run.request_key is not None and claim.entry.request_key == run.request_key
        return DraftOutcome(
            item,
            Action.DRAFT if replay else Action.SKIP,
            Reason.DRAFTED if replay else Reason.DUPLICATE,
            entry=claim.entry,
            replayed=replay,
        )
    if claim.outcome is ClaimOutcome.BUSY:
        return DraftOutcome(item, Action.SKIP, Reason.DUPLICATE, retryable=True)

    # Only now, with the key claimed, is a draft certain to be attempted: duplicates, dry runs
    # and plans never make links, and the email is rendered once, with its link.
    link = _payment_link(run, item)
    item = render_email(item, run.settings.render, run.templates, link.url or "" if link else "")
    if item.email is None:  # the template failed for this row
        run.ledger.record_failed(key, "template error", now=run.clock())
        return DraftOutcome(item, Action.ERROR, Reason.TEMPLATE_ERROR, retryable=False)
    try:
        draft = _build(run, item, key)
    except (HeaderInjectionError, ValueError, TypeError) as exc:
        run.ledger.record_failed(key, f"invalid message: {exc}", now=run.clock())
        return DraftOutcome(
            item, Action.ERROR, Reason.DRAFT_FAILED, error=str(exc), retryable=False
        )

    try:
        found: CreatedDraft | None = run.sink.find(draft) if claim.recovered else None
        created = found or run.sink.create(draft)
    except AuthorizationError:
        run.ledger.record_failed(key, "gmail authorisation failed", now=run.clock())
        raise
    except SinkError as exc:
        run.ledger.record_failed(key, f"{exc.code}: {exc}", now=run.clock())
        log.warning(
            "draft failed",
            extra={
                "invoice_id": key.invoice_id,
                "stage": key.stage,
                "code": exc.code,
                "retryable": exc.retryable,
            },
        )
        return DraftOutcome(
            item, Action.ERROR, Reason.DRAFT_FAILED, error=str(exc), retryable=exc.retryable
        )
    except Exception as exc:
        # An adapter bug must not leave the key reserved until the lease runs out.
        run.ledger.record_failed(key, f"unexpected: {type(exc).__name__}", now=run.clock())
        raise
    entry = run.ledger.record_created(
        key,
        created,
        drafted_on=run.today,
        now=run.clock(),
        subject=draft.subject,
        recipients=draft.to,
    )
    log.info(
        "draft created",
        extra={
            "invoice_id": key.invoice_id,
            "stage": key.stage,
            "draft_id": created.draft_id,
            "adopted": found is not None,
        },
    )
    return DraftOutcome(
        item,
        Action.DRAFT,
        Reason.DRAFTED,
        entry=entry,
        adopted=found is not None,
        payment_link=link.url if link else None,
        payment_link_error=link.error if link else None,
    )


def _payment_link(run: _Run, item: PlannedRow) -> PaymentLinkResult | None:
    if run.payment_links is None:
        return None
    assert item.invoice is not None
    try:
        return run.payment_links.link_for(run.scope, item.invoice)
    except Exception as exc:  # the port promises not to raise; a bug must not cost the draft
        log.exception("payment link failed", extra={"invoice_id": item.invoice_id})
        return PaymentLinkResult(error=f"unexpected {type(exc).__name__}")


def _build(run: _Run, item: PlannedRow, key: DraftKey) -> OutgoingDraft:
    assert item.invoice is not None and item.email is not None
    email = item.email
    subject = email.subject
    thread: ThreadRef | None = None
    if run.settings.thread_followups:
        earlier = run.ledger.latest_created(run.scope, item.invoice_id, key.stage)
        if earlier is not None and earlier.rfc_message_id:
            # Gmail threads a reply only when its subject matches the thread's: reuse the
            # earlier reminder's subject (kept in the ledger as metadata).
            first = _without_re(earlier.subject or subject)
            subject = f"Re: {first}"
            thread = ThreadRef(earlier.thread_id, earlier.rfc_message_id, first)
    return build_draft(
        key,
        item.invoice.client_emails,
        run.settings.sender,
        subject,
        email.body,
        thread=thread,
        domain=run.settings.sender_domain,
        now=run.clock(),
    )


def _without_re(subject: str) -> str:
    return subject[3:].lstrip() if subject.lower().startswith("re:") else subject
