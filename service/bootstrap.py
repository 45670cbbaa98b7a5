"""Wires real adapters from Settings. Entry points call this; tests pass their own pieces."""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field, replace
from functools import cached_property, partial
from typing import TYPE_CHECKING

# Adapters over Google, Stripe or SQLAlchemy are imported where first used: a process that
# needs none of those libraries never pays for loading them.
from service.adapters.csvfile import CsvFileSource
from service.adapters.http_retry import RetryPolicy
from service.adapters.maildir import MaildirSink
from service.adapters.sends_log import SendsLog
from service.config import ConfigError, Settings
from service.ports import (
    AuthorizationError,
    Clock,
    DraftSink,
    InvoiceSource,
    Ledger,
    Notifier,
    PaymentLinks,
    RunStore,
    utc_now,
)
from service.rendering import RenderSettings, TemplateSet
from service.usecases.drafts import DraftOutcome, DraftSettings
from service.usecases.plan import PlanSettings
from service.usecases.run import Progress, RunReport, RunSettings, Window, run_sheet

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from service.adapters.runs_sql import SqlDraftReview


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
    sink_override: DraftSink | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _engine: Engine | None = field(default=None, init=False, repr=False)

    @property
    def plan_settings(self) -> PlanSettings:
        """The settings plan() takes."""
        s = self.settings
        return PlanSettings(s.policy, s.parse_options, RenderSettings(s.locale, s.sender_name))

    @property
    def draft_settings(self) -> DraftSettings:
        """The settings generate_drafts() takes."""
        s = self.settings
        sender: str | None = s.gmail_sender
        if not sender and s.drafts_backend == "maildir":  # a file needs a From of its own
            sender = f"invoices@{s.sender_domain}"
        if sender and s.sender_name and "<" not in sender:
            sender = f"{s.sender_name} <{sender}>"
        # No GMAIL_SENDER: a Gmail draft has no From, and Gmail fills in its mailbox's (the user's).
        return DraftSettings(
            sender=sender or None,
            sender_domain=s.sender_domain,
            render=RenderSettings(s.locale, s.sender_name),
            lease_seconds=s.reservation_lease_seconds,
            thread_followups=s.thread_followups,
            concurrency=s.draft_concurrency,
            time_budget_seconds=s.drafts_time_budget_seconds,
            group_by_client=s.group_by_client,
            wait_for_unsent=s.unsent_policy == "wait",
        )

    def _database(self) -> Engine:
        """The ledger's database, made on first use (after the fork) and migrated by one thread."""
        with self._lock:
            if self._engine is None:
                from service.adapters.ledger_sql import make_engine
                from service.adapters.migrate import upgrade

                self._engine = make_engine(self.settings.effective_database_url)
                upgrade(self._engine)
            return self._engine

    @cached_property
    def ledger(self) -> Ledger:
        """The exactly-once ledger (SQLite by default, PostgreSQL via DATABASE_URL)."""
        from service.adapters.ledger_sql import SqlLedger

        return SqlLedger(self._database())

    @cached_property
    def runs(self) -> RunStore:
        """Headless runs, in the ledger's database so any instance can answer."""
        from service.adapters.runs_sql import SqlRuns

        lease = self.settings.run_lease_seconds
        return SqlRuns(self._database(), lease_seconds=lease, clock=self.clock)

    @cached_property
    def draft_review(self) -> SqlDraftReview:
        """The ledger's drafts read back for `invoice-collector drafts`."""
        from service.adapters.runs_sql import SqlDraftReview

        return SqlDraftReview(self._database())

    def sink_for(self, access_token: str | None) -> DraftSink:
        """The draft sink for one request: the caller's Gmail, or the Maildir."""
        if self.sink_override is not None:
            return self.sink_override
        s = self.settings
        if s.drafts_backend == "maildir":
            return MaildirSink(s.maildir_path)
        from service.adapters.gmail import CREATE_UNITS, GmailSink
        from service.adapters.quota_sql import SqlPacer

        credentials: object = access_token
        if not access_token:
            from service.adapters.google_credentials import server_credentials

            credentials = server_credentials("gmail", token_path=s.google_token_file)
            if credentials is None:
                raise GmailTokenMissing()
        return GmailSink(
            credentials,  # type: ignore[arg-type]
            endpoint=s.gmail_api_endpoint,
            mailbox=s.gmail_sender or None,
            # The mailbox's pace is kept in the ledger's database, for every process.
            pacer=SqlPacer(self._database(), s.gmail_drafts_per_second * CREATE_UNITS),
            # Bounded well inside the ledger's reservation lease, so a slow holder finishes
            # (or gives up) before anyone may take its key over.
            policy=RetryPolicy(
                max_total_s=min(s.gmail_retry_seconds, s.reservation_lease_seconds / 2)
            ),
        )

    def after_draft(self, outcome: DraftOutcome) -> None:
        """Side records of a created draft: the sends.csv line (metadata only), unless off."""
        path, entry, invoice = self.settings.sends_log, outcome.entry, outcome.planned.invoice
        if path is not None and entry is not None and invoice is not None:
            SendsLog(path).append(invoice.invoice_id, entry.key.stage, invoice.client_emails)

    @property
    def run_settings(self) -> RunSettings:
        """The settings run_sheet() takes."""
        s = self.settings
        return RunSettings(
            plan=self.plan_settings,
            # A headless run works in the background: no web worker timeout to answer before.
            draft=replace(self.draft_settings, time_budget_seconds=None),
            timezone=s.timezone_override,
            local_timezone=s.timezone,
            locale=s.locale,
            window=Window(s.window_start, s.window_end),
        )

    def source(self, kind: str | None = None) -> InvoiceSource:
        """The ``kind`` source; by default sheets with GOOGLE_SHEETS_SPREADSHEET_ID, else csv."""
        s = self.settings
        kind = kind or ("sheets" if s.google_sheets_spreadsheet_id else "csv")
        if kind == "csv":
            return CsvFileSource(s.invoices_file, column_map=s.column_map)
        if kind == "quickbooks":
            from service.adapters.quickbooks import QuickBooksNotConfigured, quickbooks_source

            try:
                return quickbooks_source(
                    self.ledger,
                    realm_id=s.qbo_realm_id,
                    client_id=s.qbo_client_id,
                    client_secret=s.qbo_client_secret,
                    refresh_token=s.qbo_refresh_token,
                    token_url=s.qbo_token_url,
                    api_base=s.qbo_api_base,
                    token_file=s.qbo_token_file,
                )
            except QuickBooksNotConfigured as exc:
                raise ConfigError(str(exc)) from None
        if kind != "sheets":
            raise ConfigError(f"the invoice source is csv, sheets or quickbooks, not {kind!r}")
        if not s.google_sheets_spreadsheet_id:
            raise ConfigError("GOOGLE_SHEETS_SPREADSHEET_ID is required to read a Google Sheet")
        from service.adapters.google_credentials import server_credentials
        from service.adapters.sheets import SheetsAuthorizationError, SheetsSource

        credentials = server_credentials(
            "sheets",
            token_path=s.google_token_file,
            service_account_file=s.google_service_account_file,
        )
        if credentials is None:
            raise SheetsAuthorizationError(
                "No Google credentials for Sheets: run `invoice-collector auth` "
                "(or set GOOGLE_SERVICE_ACCOUNT_FILE)."
            )
        # TIMEZONE, if set, overrides the sheet's zone and saves the spreadsheets.get to learn it.
        return SheetsSource(
            s.google_sheets_spreadsheet_id,
            s.google_sheets_range,
            credentials=credentials,
            endpoint=s.sheets_api_endpoint,
            timezone=s.timezone_override,
            column_map=s.column_map,
        )

    def run(
        self,
        source: InvoiceSource,
        on_progress: Progress | None = None,
        *,
        today: dt.date | None,
        dry_run: bool,
        force: bool,
        sink: DraftSink | None = None,
    ) -> RunReport:
        """run_sheet() over ``source`` with these collaborators (the CLI's and the API's)."""
        s = self.settings
        notifier: Notifier | None = None
        if s.slack_webhook_url:  # Slack alerts for late, large drafts
            from service.adapters.slack import SlackNotifier

            notifier = SlackNotifier(s.slack_webhook_url, s.slack_min_amount, locale=s.locale)
        # SHEETS_LOG_TAB: only a Google Sheet source has a Log tab to append to.
        tab, append = s.sheets_log_tab, getattr(source, "append_rows", None)
        return run_sheet(
            source,
            ledger=self.ledger,
            sink=(lambda: sink) if sink is not None else (lambda: self.sink_for(None)),
            templates=self.templates,
            settings=self.run_settings,
            clock=self.clock,
            today=today,
            dry_run=dry_run,
            force=force,
            notifier=notifier,
            on_progress=on_progress,
            on_created=self.after_draft,
            payment_links=self.payment_links,
            draft_log=partial(append, tab) if tab and append is not None else None,
        )

    @cached_property
    def payment_links(self) -> PaymentLinks | None:
        """Stripe payment links for drafted reminders; None when STRIPE_API_KEY is unset."""
        s = self.settings
        if not s.stripe_api_key:
            return None
        from service.adapters.runs_sql import SqlPaymentLinks
        from service.adapters.stripe_links import StripePaymentLinks

        store = SqlPaymentLinks(self._database())  # links are kept beside the ledger
        return StripePaymentLinks(s.stripe_api_key, store, api_base=s.stripe_api_base)


def build_services(settings: Settings, clock: Clock = utc_now) -> Services:
    """Load templates and wire adapters for ``settings``."""
    templates = TemplateSet(settings.templates_dir, settings.stages)
    return Services(settings=settings, templates=templates, clock=clock)
