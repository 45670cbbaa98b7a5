"""run_sheet(): the headless daily run — read once, plan, draft, write back once, alert.

The use case behind `invoice-collector run`, `POST /v1/runs`, cron and systemd. It takes its
collaborators as arguments and reads no environment: service/bootstrap.py wires them.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from service.domain.dates import today_in
from service.domain.decide import Reason
from service.ports import (
    AuthorizationError,
    Clock,
    DraftAlert,
    DraftSink,
    InvoiceSource,
    Ledger,
    Notifier,
    PaymentLinks,
    RowsMoved,
    RunState,
    RunStore,
    SheetSnapshot,
    WriteBack,
)
from service.rendering import TemplateSet
from service.usecases.drafts import DraftOutcome, DraftSettings, generate_drafts
from service.usecases.plan import PlanSettings, plan
from service.usecases.report import outcome_row_dict, planned_row_dict, summarize

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]
DraftLog = Callable[[Sequence[Sequence[object]]], None]


class RunStatus(StrEnum):
    DONE = "done"  # the sheet was read, planned and (unless a dry run) drafted
    OUTSIDE_WINDOW = "outside_window"  # nothing happened: outside WINDOW_START–WINDOW_END


@dataclass(frozen=True)
class Window:
    """The hours of the day, in the run's zone, when headless runs may draft: [start, end)."""

    start: int = 0
    end: int = 24

    def contains(self, now: dt.datetime, timezone: str) -> bool:
        """Whether the aware instant ``now`` falls inside the window in ``timezone``."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        # The owner's working hours are local hours: 08:00 in Auckland is 19:00 UTC the day before.
        return self.start <= now.astimezone(ZoneInfo(timezone)).hour < self.end


@dataclass(frozen=True)
class RunSettings:
    """What a run needs from the configuration."""

    plan: PlanSettings
    draft: DraftSettings
    timezone: str | None = None  # TIMEZONE: overrides the zone a spreadsheet says it is in
    local_timezone: str = "UTC"  # this machine's: for sources that know no zone of their own
    locale: str = "en_US"
    window: Window = field(default_factory=Window)


# Where a run's zone came from, as its summary says it.
ZONE_FROM_SETTING, ZONE_FROM_SHEET, ZONE_FROM_MACHINE = "TIMEZONE", "spreadsheet", "machine"


def run_timezone(source: InvoiceSource, settings: RunSettings) -> tuple[str, str]:
    """The zone of a run's "today" and window, and where it came from: TIMEZONE, else a
    spreadsheet's own (a Los Angeles sheet's 21:00 is still today there, though tomorrow in
    UTC), else this machine's."""
    if settings.timezone:
        return settings.timezone, ZONE_FROM_SETTING
    # A Google Sheet knows its zone before it is read.
    told = getattr(source, "spreadsheet_timezone", None)
    if told is not None and (zone := told()):
        return zone, ZONE_FROM_SHEET
    return settings.local_timezone, ZONE_FROM_MACHINE


@dataclass(frozen=True)
class RunReport:
    """What one run did: per-row results (never bodies), counts and side effects."""

    status: RunStatus
    dry_run: bool
    scope: str | None = None
    today: dt.date | None = None
    timezone: str = "UTC"
    timezone_from: str = ZONE_FROM_SETTING
    rows: tuple[dict[str, Any], ...] = ()
    summary: dict[str, Any] = field(default_factory=dict)
    drafted: int = 0
    written: int = 0  # rows whose output cells the write-back changed
    stopped: str | None = None  # "gmail_unauthorized" when the mailbox refused us mid-run
    write_error: str | None = None
    write_error_code: str | None = None
    alerted: bool = False

    @property
    def failed(self) -> int:
        """Rows whose draft could not be made now but may be on a later run."""
        # A retryable duplicate: another worker held the key; it or a later run drafts the row.
        return sum(
            r["reason"] in (Reason.DRAFT_FAILED, Reason.GMAIL_UNAUTHORIZED)
            or (r["reason"] == Reason.DUPLICATE and r.get("retryable") is True)
            for r in self.rows
        )

    @property
    def invalid(self) -> int:
        """Rows the sheet itself must fix (bad cells, duplicate ids, broken template)."""
        data = (Reason.INVALID_ROW, Reason.DUPLICATE_INVOICE_ID, Reason.TEMPLATE_ERROR)
        return sum(r["reason"] in data for r in self.rows)

    def as_dict(self) -> dict[str, Any]:
        """The JSON shape stored for /v1/runs and printed by `run --json`."""
        return {
            "status": self.status.value,
            "dry_run": self.dry_run,
            "scope": self.scope,
            "today": self.today.isoformat() if self.today else None,
            "timezone": self.timezone,
            "timezone_from": self.timezone_from,
            "summary": self.summary,
            "rows": list(self.rows),
        }


def run_sheet(
    source: InvoiceSource,
    *,
    ledger: Ledger,
    sink: Callable[[], DraftSink],
    templates: TemplateSet,
    settings: RunSettings,
    clock: Clock,
    today: dt.date | None = None,
    dry_run: bool = True,
    force: bool = False,
    notifier: Notifier | None = None,
    on_progress: Progress | None = None,
    on_created: Callable[[DraftOutcome], None] | None = None,
    payment_links: PaymentLinks | None = None,
    draft_log: DraftLog | None = None,
) -> RunReport:
    """Read the sheet once, draft what is due at most once, write back once, alert once.
    ``sink`` is a factory so a dry run needs no mailbox credentials. Outside the window nothing
    is read or written unless ``force``. ``draft_log`` gets one line per draft created
    (timestamp, invoice, stage, recipients), once per run."""
    zone, zone_from = run_timezone(source, settings)
    window = settings.window
    if not force and not window.contains(clock(), zone):
        # A timer firing outside the window drafts nothing every day: say so loudly.
        log.warning(
            "run skipped: outside the window",
            extra={"window_start": window.start, "window_end": window.end, "timezone": zone},
        )
        return RunReport(RunStatus.OUTSIDE_WINDOW, dry_run, timezone=zone, timezone_from=zone_from)

    snapshot = source.read()
    day = today or today_in(zone, clock())
    report = partial(
        RunReport, scope=snapshot.scope, today=day, timezone=zone, timezone_from=zone_from
    )
    raw_rows = [{**row.values, "row": row.row} for row in snapshot.rows]
    # A dry run previews each email; a real run renders it when it drafts it.
    planned = plan(raw_rows, today=day, settings=settings.plan, templates=templates, render=dry_run)
    total = sum(1 for p in planned if p.is_draft)
    if on_progress is not None:
        on_progress(0, total)

    if dry_run:
        rows = tuple(planned_row_dict(p, locale=settings.locale, with_body=False) for p in planned)
        log.info("dry run planned", extra={"scope": snapshot.scope, "to_draft": total})
        return report(RunStatus.DONE, True, rows=rows, summary=summarize(rows))

    result = generate_drafts(
        planned,
        scope=snapshot.scope,
        today=day,
        ledger=ledger,
        sink=sink() if total else _NoSink(),
        settings=settings.draft,
        templates=templates,
        clock=clock,
        on_progress=on_progress,
        on_created=on_created,
        payment_links=payment_links,
    )
    rows = tuple(
        outcome_row_dict(o, locale=settings.locale, with_body=False) for o in result.outcomes
    )
    # Rows drafted now, and rows drafted earlier whose write-back was lost (a crash between
    # "draft created" and "sheet written"): the ledger has their ids, so the sheet is repaired.
    updates = [o.writeback for o in result.outcomes if o.writeback is not None]
    written, write_error, write_code = _write_back(source, snapshot, updates)
    alerted = _alert(notifier, result.outcomes)
    if draft_log is not None:
        _log_drafts(draft_log, rows, clock())
    summary = {**summarize(rows), "drafted": result.drafted, "written": written}
    log.info(
        "run finished",
        extra={
            "scope": snapshot.scope,
            "today": day.isoformat(),
            "drafted": result.drafted,
            "written": written,
            "stopped": result.stopped,
        },
    )
    return report(
        RunStatus.DONE,
        False,
        rows=rows,
        summary=summary,
        drafted=result.drafted,
        written=written,
        stopped=result.stopped,
        write_error=write_error,
        write_error_code=write_code,
        alerted=alerted,
    )


def _write_back(
    source: InvoiceSource, snapshot: SheetSnapshot, updates: Sequence[WriteBack]
) -> tuple[int, str | None, str | None]:
    """One write-back of every changed row; a failure is reported, never loses the report."""
    if not updates:
        return 0, None, None
    try:
        return source.write_back(snapshot, updates), None, None
    except RowsMoved as exc:
        log.warning("write-back incomplete: rows moved", extra={"written": exc.written})
        return exc.written, str(exc), exc.code
    except AuthorizationError as exc:
        log.error("write-back refused", extra={"code": exc.code})
        return 0, str(exc), exc.code
    except Exception as exc:
        # The drafts exist and the ledger knows them: the next run writes these rows back
        # (they come back as duplicates carrying their ids), so report instead of raising.
        log.exception("write-back failed", extra={"rows": len(updates)})
        return 0, f"{type(exc).__name__}: {exc}", getattr(exc, "code", "write_back_failed")


def _alert(notifier: Notifier | None, outcomes: Sequence[DraftOutcome]) -> bool:
    """One Slack message for the drafts created by this run (the notifier filters them)."""
    if notifier is None:
        return False
    items = [
        DraftAlert(
            invoice_id=o.planned.invoice_id,
            client_name=o.planned.invoice.client_name,
            stage=o.entry.key.stage,
            balance=o.planned.invoice.balance,
            currency=o.planned.invoice.currency,
            draft_url=o.entry.draft_url,
        )
        for o in outcomes
        if o.reason is Reason.DRAFTED and o.entry is not None and o.planned.invoice is not None
    ]
    return notifier.notify_run(items) if items else False


def _log_drafts(draft_log: DraftLog, rows: Sequence[dict[str, Any]], now: dt.datetime) -> None:
    """One line per draft this run created to the Log tab; a failure costs only the log."""
    at = now.isoformat(timespec="seconds")
    lines = [
        [at, r["invoice_id"], r["stage"], ", ".join(r["to"])]
        for r in rows
        if r["reason"] == Reason.DRAFTED.value
    ]
    try:
        if lines:
            draft_log(lines)
    except Exception:
        log.exception("draft log failed", extra={"drafts": len(lines)})


class _NoSink:
    """The sink of a run with nothing to draft: never called, needs no credentials."""

    mailbox = None

    def create(self, draft: Any) -> Any:
        raise AssertionError("nothing to draft")

    find = in_drafts = create


# Progress is written to the run store at most this often (and at the end), not per draft.
PROGRESS_EVERY_S = 0.5


def record_run(
    runs: RunStore,
    run_id: str,
    execute: Callable[[Progress], RunReport],
    *,
    clock: Clock,
    timer: Callable[[], float] = time.monotonic,
    heartbeat_s: float = 60.0,
) -> None:
    """Carry out one accepted run, recording its progress and outcome; never raises. The run is
    touched every ``heartbeat_s`` while it works, so a run whose worker died is told from a
    slow one: it falls silent, and the store marks it interrupted after its lease."""
    last = 0.0
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(heartbeat_s):
            try:
                runs.update_run(run_id, now=clock())
            except Exception:  # finished meanwhile, or the database is away: the lease tells
                return

    def progress(done: int, total: int) -> None:
        nonlocal last
        now = timer()
        if done == 0 or done == total or now - last >= PROGRESS_EVERY_S:
            last = now
            runs.update_run(run_id, now=clock(), done=done, total=total)

    try:
        runs.update_run(run_id, now=clock(), state=RunState.RUNNING)
        threading.Thread(target=heartbeat, name=f"heartbeat-{run_id}", daemon=True).start()
        try:
            report = execute(progress)
        finally:
            stop.set()
        said = ("timezone", "timezone_from", "dry_run", "alerted", "stopped", "write_error")
        summary = {
            **report.summary,
            "today": report.today.isoformat() if report.today else None,
            **{name: getattr(report, name) for name in said},
        }
        runs.update_run(
            run_id,
            now=clock(),
            state=RunState.DONE,
            summary=summary,
            results=report.rows,
            error=report.write_error,
        )
    except Exception as exc:
        log.exception("run failed", extra={"run_id": run_id, "error_type": type(exc).__name__})
        try:
            runs.update_run(
                run_id, now=clock(), state=RunState.FAILED, error=f"{type(exc).__name__}: {exc}"
            )
        except Exception:
            log.exception("could not record the failed run", extra={"run_id": run_id})
