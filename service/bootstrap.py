"""Wires real adapters from Settings. Entry points call this; tests pass their own pieces."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from service.config import Settings
from service.generate import DraftOutcome, DraftSettings
from service.planning import PlanSettings
from service.ports import AuthorizationError, DraftSink, Ledger
from service.rendering import TemplateSet

if TYPE_CHECKING:
    from service.adapters.runs_sql import SqlRuns
    from service.adapters.sends_log import SendsLog

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    """The real clock, timezone-aware."""
    return dt.datetime.now(dt.UTC)


class GmailTokenMissing(AuthorizationError):
    """DRAFTS_BACKEND=gmail, no X-Google-Access-Token and no server credentials."""

    def __init__(self) -> None:
        super().__init__(
            "Gmail drafts need the user's token in X-Google-Access-Token "
            "(or server credentials: run `invoice-collector auth`)."
        )
        self.code = "gmail_token_missing"


@dataclass
class Services:
    """What the entry points need, built once per process; adapters made on first use."""

    settings: Settings
    templates: TemplateSet
    clock: Clock = utc_now
    ledger_override: Ledger | None = None
    sink_override: DraftSink | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def plan_settings(self) -> PlanSettings:
        """The settings plan() takes."""
        s = self.settings
        return PlanSettings(s.policy, s.parse_options, s.render_settings)

    @property
    def draft_settings(self) -> DraftSettings:
        """The settings generate_drafts() takes."""
        s = self.settings
        sender = s.gmail_sender or f"invoices@{s.sender_domain}"
        if s.sender_name and "<" not in sender:
            sender = f"{s.sender_name} <{sender}>"
        return DraftSettings(
            sender=sender,
            sender_domain=s.sender_domain,
            render=s.render_settings,
            lease_seconds=s.reservation_lease_seconds,
            thread_followups=s.thread_followups,
        )

    @cached_property
    def _engine(self):  # type: ignore[no-untyped-def]
        # Made on first use, so each gunicorn worker opens its own connections after the fork.
        from service.adapters.ledger_sql import make_engine
        from service.adapters.migrate import upgrade

        engine = make_engine(self.settings.effective_database_url)
        upgrade(engine)
        return engine

    @cached_property
    def ledger(self) -> Ledger:
        """The exactly-once ledger (SQLite by default, PostgreSQL via DATABASE_URL)."""
        if self.ledger_override is not None:
            return self.ledger_override
        from service.adapters.ledger_sql import SqlLedger

        with self._lock:
            return SqlLedger(self._engine)

    @cached_property
    def runs(self) -> SqlRuns:
        """Headless runs, in the ledger's database so any instance can answer."""
        from service.adapters.runs_sql import SqlRuns

        with self._lock:
            return SqlRuns(self._engine)

    @cached_property
    def sends_log(self) -> SendsLog | None:
        """logs/sends.csv, one line per created draft (None when SENDS_LOG=off)."""
        from service.adapters.sends_log import SendsLog

        path = self.settings.sends_log
        return SendsLog(path) if path is not None else None

    def sink_for(self, access_token: str | None) -> DraftSink:
        """The draft sink for one request: the caller's Gmail, or the Maildir."""
        if self.sink_override is not None:
            return self.sink_override
        s = self.settings
        if s.drafts_backend == "maildir":
            from service.adapters.maildir import MaildirSink

            return MaildirSink(s.maildir_path)
        from service.adapters.gmail import GmailSink

        credentials: object = access_token
        if not access_token:
            from service.adapters.google_credentials import server_credentials

            credentials = server_credentials(s, scopes="gmail")
            if credentials is None:
                raise GmailTokenMissing()
        return GmailSink(
            credentials,  # type: ignore[arg-type]
            endpoint=s.gmail_api_endpoint,
            mailbox=s.gmail_sender or None,
            drafts_per_second=s.gmail_drafts_per_second,
        )

    def after_draft(self, outcome: DraftOutcome) -> None:
        """Side records of a created draft: the sends.csv line (metadata only)."""
        log = self.sends_log
        if log is None or outcome.entry is None or outcome.planned.invoice is None:
            return
        log.append(
            outcome.planned.invoice_id,
            outcome.entry.key.stage,
            list(outcome.planned.invoice.client_emails),
        )


def build_services(settings: Settings, clock: Clock = utc_now) -> Services:
    """Load templates and wire adapters for ``settings``."""
    templates = TemplateSet(settings.templates_dir, settings.stages)
    return Services(settings=settings, templates=templates, clock=clock)
