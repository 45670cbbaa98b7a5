"""generate_drafts(): the exactly-once flow of DESIGN §7 over planned rows.

Per row: claim its (scope, invoice, stage) key → create the draft (or, after a lapsed lease,
adopt the one its holder may have made) → record its ids. A lost claim is a duplicate. A create
that certainly failed releases the key as retryable; an unknown outcome keeps it reserved and
the row `pending` until a call after the lease looks for the draft. No body is stored or logged.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from service.domain.decide import Action, Reason
from service.ports import (
    AuthorizationError,
    Claim,
    ClaimOutcome,
    Clock,
    CreatedDraft,
    DraftKey,
    DraftSink,
    Ledger,
    LedgerEntry,
    OutcomeUnknown,
    OutgoingDraft,
    PaymentLinkResult,
    PaymentLinks,
    SinkError,
    ThreadRef,
    WriteBack,
)
from service.rendering import (
    RenderedEmail,
    RenderSettings,
    StatementLine,
    TemplateLoadError,
    TemplateSet,
    statement_fields,
)
from service.usecases.message import HeaderInjectionError, build_draft
from service.usecases.plan import PlannedRow, render_email

log = logging.getLogger(__name__)
_REPLY_PREFIX = re.compile(r"^re:\s*", re.IGNORECASE)


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
    # No draft is started after this many seconds of a call (None: no limit), so a sidebar
    # chunk answers before the web worker's timeout; the rest come back as `time_budget` rows.
    time_budget_seconds: float | None = None
    # One statement draft for a client with two or more invoices due the same day.
    group_by_client: bool = False
    # Draft no stage on top of an earlier reminder still unsent in Drafts (UNSENT_POLICY=wait).
    wait_for_unsent: bool = False


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
    statement_of: int = 0  # the invoices in this row's statement draft (0: its own draft)
    waiting: LedgerEntry | None = None  # previous_unsent: the earlier draft still in Drafts
    drafted_by: str | None = None  # duplicate: the other mailbox whose Drafts hold it

    @property
    def writeback(self) -> WriteBack | None:
        """The output cells for the row, once its draft exists."""
        e = self.entry
        if e is None or e.draft_id is None or self.planned.row is None:
            return None
        drafted_on = e.drafted_on or e.reserved_at.date()
        days = self.planned.decision.days_overdue
        status = f"Drafted stage {e.key.stage} reminder ({days} days overdue) on {drafted_on}"
        if self.statement_of:
            status = f"{status}, in a statement of {self.statement_of} invoices"
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
    Each email is rendered here, once, after its key is claimed. With ``payment_links`` a draft
    carries a link for the open balance, or its row says why it has none."""
    run = _Run(scope, today, ledger, sink, settings, templates, clock, request_key, payment_links)
    outcomes = [DraftOutcome(item, item.decision.action, item.decision.reason) for item in planned]
    todo = [i for i, item in enumerate(planned) if item.is_draft]
    units = _units(planned, todo, settings.group_by_client)
    stop = threading.Event()
    ends = None if settings.time_budget_seconds is None else timer() + settings.time_budget_seconds

    def work(indexes: list[int]) -> list[DraftOutcome]:
        unit = [planned[i] for i in indexes]
        if stop.is_set():  # the mailbox refused us: try nothing more this run
            return _each(unit, Action.ERROR, Reason.GMAIL_UNAUTHORIZED, retryable=True)
        if ends is not None and timer() >= ends:
            return _each(unit, Action.SKIP, Reason.TIME_BUDGET, retryable=True)
        try:
            return _draft(run, unit)
        except AuthorizationError as exc:
            stop.set()
            return _each(unit, Action.ERROR, Reason.GMAIL_UNAUTHORIZED, str(exc), retryable=True)

    done = 0
    # The pool starts its threads on the first task: a serial run (map) starts none.
    with ThreadPoolExecutor(settings.concurrency, thread_name_prefix="draft") as pool:
        parallel = settings.concurrency > 1 and len(units) > 1
        results = pool.map(work, units) if parallel else map(work, units)
        for indexes, unit_outcomes in zip(units, results, strict=True):
            for i, outcome in zip(indexes, unit_outcomes, strict=True):
                outcomes[i] = outcome
                created = outcome.reason is Reason.DRAFTED and not outcome.replayed
                if on_created is not None and created:
                    on_created(outcome)
                done += 1
                if on_progress is not None:
                    on_progress(done, len(todo))
    return GenerateResult(outcomes, Reason.GMAIL_UNAUTHORIZED.value if stop.is_set() else None)


def _units(planned: Sequence[PlannedRow], todo: list[int], by_client: bool) -> list[list[int]]:
    """What becomes one draft: each invoice alone, or one client's invoices together."""
    if not by_client:
        return [[i] for i in todo]
    clients: dict[frozenset[str], list[int]] = {}
    for i in todo:
        invoice = planned[i].invoice
        assert invoice is not None
        clients.setdefault(frozenset(e.lower() for e in invoice.client_emails), []).append(i)
    return list(clients.values())


def _each(
    unit: list[PlannedRow],
    action: Action,
    reason: Reason,
    error: str | None = None,
    *,
    retryable: bool,
) -> list[DraftOutcome]:
    """The same outcome for every row of a unit that got no draft."""
    return [DraftOutcome(item, action, reason, error=error, retryable=retryable) for item in unit]


def _draft(run: _Run, unit: list[PlannedRow]) -> list[DraftOutcome]:
    """Claim the unit's keys (all or none), render and create its one draft, record it."""
    earlier: list[LedgerEntry | None] | None = None
    if run.settings.wait_for_unsent:
        earlier = [_latest(run, item) for item in unit]
        waiting = [_unsent(run, entry) for entry in earlier]
        if any(waiting):
            return [
                DraftOutcome(item, Action.SKIP, Reason.PREVIOUS_UNSENT, waiting=w, retryable=True)
                for item, w in zip(unit, waiting, strict=True)
            ]
    keys = [DraftKey(run.scope, item.invoice_id, item.decision.stage or 0) for item in unit]
    # All or none: a statement's invoices are claimed together (a reminder is a unit of one).
    claims = run.ledger.claim_all(
        keys, now=run.clock(), lease_seconds=run.settings.lease_seconds, request_key=run.request_key
    )
    if any(c.outcome is not ClaimOutcome.CLAIMED for c in claims):
        return [_not_claimed(run, item, claim) for item, claim in zip(unit, claims, strict=True)]

    def fail(error: str) -> None:
        for key in keys:
            run.ledger.record_failed(key, error, now=run.clock())

    # Only now, with the keys claimed, is a draft certain to be attempted: duplicates, dry runs
    # and plans never make links, and the email is rendered once, with its links.
    links = [_payment_link(run, item) for item in unit]
    thread_with = None
    if run.settings.thread_followups and len(unit) == 1:
        thread_with = earlier[0] if earlier else _latest(run, unit[0])  # read once
    try:
        email = _render(run, unit, links)
        draft = _build(run, unit[0], keys[0], email, thread_with)
    except TemplateLoadError as exc:
        fail("template error")
        return _each(unit, Action.ERROR, Reason.TEMPLATE_ERROR, str(exc), retryable=False)
    except (HeaderInjectionError, ValueError, TypeError) as exc:
        fail(f"invalid message: {exc}")
        return _each(unit, Action.ERROR, Reason.DRAFT_FAILED, str(exc), retryable=False)
    # A key whose lease ran out may hold the draft its holder made: look before creating.
    looking = any(claim.recovered for claim in claims)
    try:
        found: CreatedDraft | None = run.sink.find(draft) if looking else None
        looking = False
        created = found or run.sink.create(draft)
    except SinkError as exc:
        log.warning("draft failed", extra={"invoices": len(unit), "code": exc.code})
        # While a draft may exist (the create's outcome is unknown, or the look failed), the
        # key stays reserved: released, it would be claimed again and created blind. Only a
        # look after the lease (a recovered claim) creates it.
        uncertain = looking or isinstance(exc, OutcomeUnknown)
        if not uncertain:
            fail(f"{exc.code}: {exc}")
        if isinstance(exc, AuthorizationError):
            raise
        if uncertain:
            return _each(unit, Action.SKIP, Reason.PENDING, str(exc), retryable=True)
        return _each(unit, Action.ERROR, Reason.DRAFT_FAILED, str(exc), retryable=exc.retryable)
    except Exception as exc:
        # An adapter bug must not leave the keys reserved until the lease runs out.
        fail(f"unexpected: {type(exc).__name__}")
        raise
    outcomes = []
    for item, key, link in zip(unit, keys, links, strict=True):
        now = run.clock()
        entry = run.ledger.record_created(
            key, created, drafted_on=run.today, now=now, subject=draft.subject, recipients=draft.to
        )
        log.info(
            "draft created",
            extra={"invoice_id": key.invoice_id, "stage": key.stage, "draft_id": created.draft_id},
        )
        outcomes.append(
            DraftOutcome(
                replace(item, email=email) if len(unit) == 1 else item,
                Action.DRAFT,
                Reason.DRAFTED,
                entry=entry,
                adopted=found is not None,
                payment_link=link.url if link else None,
                payment_link_error=link.error if link else None,
                statement_of=len(unit) if len(unit) > 1 else 0,
            )
        )
    return outcomes


def _latest(run: _Run, item: PlannedRow) -> LedgerEntry | None:
    stage = item.decision.stage
    assert stage is not None
    return run.ledger.latest_created(run.scope, item.invoice_id, stage)


def _unsent(run: _Run, earlier: LedgerEntry | None) -> LedgerEntry | None:
    """The last reminder if still unsent in Drafts: the next, sterner one must not land on it."""
    if earlier is None or earlier.draft_id is None:
        return None
    try:
        return earlier if run.sink.in_drafts(earlier) else None
    except SinkError as exc:  # unknown: better a reminder than a silent stall
        log.warning("could not tell whether a draft was sent", extra={"code": exc.code})
        return None


def _not_claimed(run: _Run, item: PlannedRow, claim: Claim) -> DraftOutcome:
    if claim.outcome is ClaimOutcome.CREATED:
        # Drafted before. A replay of the same request (same Idempotency-Key) answers as the
        # first did; anyone else learns it is a duplicate — with the draft's ids either way.
        replay = run.request_key is not None and claim.entry.request_key == run.request_key
        owner = claim.entry.mailbox
        return DraftOutcome(
            item,
            Action.DRAFT if replay else Action.SKIP,
            Reason.DRAFTED if replay else Reason.DUPLICATE,
            entry=claim.entry,
            replayed=replay,
            drafted_by=owner if owner and owner != _mailbox(run) else None,
        )
    return DraftOutcome(item, Action.SKIP, Reason.DUPLICATE, retryable=True)


def _mailbox(run: _Run) -> str | None:
    try:
        return run.sink.mailbox
    except SinkError:  # cannot tell: the row then names the mailbox that has the draft
        return None


def _render(
    run: _Run, unit: list[PlannedRow], links: list[PaymentLinkResult | None]
) -> RenderedEmail:
    """The unit's email: its stage's reminder, or a statement of the client's invoices."""
    urls = [link.url or "" if link else "" for link in links]
    if len(unit) == 1:
        rendered = render_email(unit[0], run.settings.render, run.templates, urls[0])
        if rendered.email is None:
            raise TemplateLoadError((rendered.errors or {}).get("template", "template error"))
        return rendered.email
    lines = []
    for item, url in zip(unit, urls, strict=True):
        assert item.invoice is not None and item.decision.stage is not None
        lines.append(
            StatementLine(item.invoice, item.decision.days_overdue or 0, item.decision.stage, url)
        )
    return run.templates.render_statement(statement_fields(lines, run.settings.render))


def _payment_link(run: _Run, item: PlannedRow) -> PaymentLinkResult | None:
    if run.payment_links is None:
        return None
    assert item.invoice is not None
    try:
        return run.payment_links.link_for(run.scope, item.invoice)
    except Exception as exc:  # the port promises not to raise; a bug must not cost the draft
        log.exception("payment link failed", extra={"invoice_id": item.invoice_id})
        return PaymentLinkResult(error=f"unexpected {type(exc).__name__}")


def _build(
    run: _Run, item: PlannedRow, key: DraftKey, email: RenderedEmail, earlier: LedgerEntry | None
) -> OutgoingDraft:
    """The draft for ``key``; a statement is found again (crash recovery) by its first
    invoice's key. With ``earlier``, a follow-up in that reminder's thread."""
    assert item.invoice is not None
    subject = email.subject
    thread: ThreadRef | None = None
    if earlier is not None and earlier.rfc_message_id:
        # Gmail threads a reply only when its subject matches the thread's: reuse the
        # earlier reminder's subject (kept in the ledger as metadata).
        first = _REPLY_PREFIX.sub("", earlier.subject or subject)
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
