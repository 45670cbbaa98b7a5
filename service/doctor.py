"""`invoice-collector doctor`: a configuration checked end to end, one verdict per check.

Checks only read (a setting, the database's revision, one Sheets read, one Gmail profile).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

from service.adapters.maildir import MaildirSink
from service.bootstrap import build_services
from service.config import Settings, machine_timezone
from service.domain.invoice import field_names
from service.ports import Clock, InvoiceSource
from service.usecases.run import run_timezone

REQUIRED = ("invoice_id", "client_name", "client_email", "amount", "due_date")  # DESIGN §3
TIMERS = (
    Path("/etc/systemd/system/invoice-collector.timer"),
    Path("~/.config/systemd/user/invoice-collector.timer"),
)
# OnCalendar=*-*-* 09:00:00 Pacific/Auckland: the time of day, and the zone when one is named.
_ON_CALENDAR = re.compile(
    r"^OnCalendar=.*?\b(\d{1,2}):(\d{2})(?::\d{2})?(?:[ \t]+(\S+))?[ \t]*$", re.M
)


@dataclass(frozen=True)
class Check:
    """One check's verdict: what was found and, when it failed, how to fix it."""

    name: str
    ok: bool
    found: str
    fix: str = ""


class Problem(Exception):
    """A check failed: its args are what was found, and the fix."""


def _run(name: str, fix: str, test: Callable[[], str]) -> Check:
    """``test()`` returns what it found, or raises: a Problem brings its own fix."""
    try:
        return Check(name, True, test())
    except Problem as problem:
        return Check(name, False, *problem.args)
    except Exception as exc:
        said = " ".join(f"{type(exc).__name__}: {exc}".split())  # one line, however told
        return Check(name, False, said.rstrip(":"), fix)


def diagnose(s: Settings, *, clock: Clock, timers: Sequence[Path] = TIMERS) -> Iterator[Check]:
    """Every check that applies to the settings ``s``, in order."""
    # Without TIMEZONE, so the sheet says its own zone and it can be held against TIMEZONE.
    services = build_services(replace(s, timezone_override=None), clock=clock)
    sheet = bool(s.google_sheets_spreadsheet_id)
    origin = f"sheet {s.google_sheets_spreadsheet_id}" if sheet else str(s.invoices_file)
    said = f"invoices from {origin}, drafts to {s.drafts_backend}"
    yield Check("settings", True, f"{said}, window {s.window_start:02d}–{s.window_end:02d}h")

    errors = "; ".join(services.templates.errors.values())  # each message is non-empty
    fix = f"fix the files in {s.templates_dir}" if errors else ""
    yield Check("templates", not errors, errors or f"{len(s.stages)} stages load", fix)

    def database() -> str:
        from service.adapters.ledger_sql import make_engine
        from service.adapters.migrate import current_revision, head_revision

        engine = make_engine(s.effective_database_url)
        try:
            current, head = current_revision(engine), head_revision()
            where = engine.url.render_as_string(hide_password=True)
        finally:
            engine.dispose()
        if current not in (head, None):  # None: a new database, migrated on first use
            raise Problem(
                f"{where} is at migration {current}, this code needs {head}",
                "restart the API or run any command (each migrates at start), as a database "
                "user allowed to alter tables; a newer database needs the newer code",
            )
        return f"{where} at migration {current or 'none yet (made on first use)'}"

    yield _run("database", "check DATABASE_URL, and that the database is up", database)

    if s.drafts_backend == "maildir":

        def maildir() -> str:
            probe = MaildirSink(s.maildir_path).root / "tmp" / ".invoice-collector-doctor"
            probe.write_bytes(b"")
            probe.unlink()
            return f"{probe.parent.parent} is writable"

        yield _run("maildir", f"make {s.maildir_path} writable, or set MAILDIR_PATH", maildir)

    if sheet or s.drafts_backend == "gmail":
        yield _run("google credentials", "run `invoice-collector auth`", lambda: _scopes(s))
    if s.drafts_backend == "gmail":

        def gmail() -> str:
            # GMAIL_SENDER unset, so Gmail is asked whose mailbox the token opens.
            sink = build_services(replace(s, gmail_sender=""), clock=clock).sink_for(None)
            mailbox = sink.mailbox
            if s.gmail_sender and s.gmail_sender.lower() != (mailbox or "").lower():
                raise Problem(
                    f"the token opens {mailbox}, GMAIL_SENDER is {s.gmail_sender}",
                    f"set GMAIL_SENDER={mailbox}, or run `invoice-collector auth` as "
                    f"{s.gmail_sender}",
                )
            return f"drafts go to {mailbox}'s Drafts"

        yield _run("gmail", "run `invoice-collector auth` again", gmail)

    source: list[InvoiceSource] = []

    def invoices() -> str:
        source.append(services.source())
        snapshot = source[0].read()
        found = set(field_names(snapshot.headers, s.parse_options).values())
        if missing := [name for name in REQUIRED if name not in found]:
            raise Problem(
                f"the header row lacks {', '.join(missing)}",
                f"add the column(s) {', '.join(missing)} to row 1 (case, spaces and _ do not "
                "matter) or map yours with COLUMN_MAP",
            )
        if not sheet and not os.access(s.invoices_file, os.W_OK):  # the write-back would fail
            raise Problem(
                f"{s.invoices_file} is read-only for this user",
                "make it writable, or copy it to a writable place and set INVOICES_FILE",
            )
        rows = len(snapshot.rows)
        return f"{snapshot.scope}: {rows} row{'s' if rows != 1 else ''}, every required column"

    fix = (
        "share the sheet with the account of `invoice-collector auth` and check "
        "GOOGLE_SHEETS_SPREADSHEET_ID and GOOGLE_SHEETS_RANGE"
        if sheet
        else "check INVOICES_FILE"
    )
    # An unreadable sheet tells no zone: the zone and timer checks wait for it to be fixed.
    result = _run("sheet" if sheet else "invoices file", fix, invoices)
    yield result
    if result.ok:
        zone, zone_from = run_timezone(source[0], services.run_settings)
        yield _run("time zone", "", lambda: _zone(s, zone, zone_from))
        run_zone, now = s.timezone_override or zone, clock()
        for path in (p.expanduser() for p in timers):
            if path.is_file():
                check = partial(_timer, s, path, run_zone, now)
                yield _run("timer", f"fix OnCalendar= in {path}", check)
    if s.slack_webhook_url:
        yield _run("slack", "", lambda: _slack(s))
    if s.stripe_api_key:
        yield _run("stripe", "", lambda: _stripe(s))
    if s.qbo_realm_id or s.qbo_client_id:
        yield _run("quickbooks", "", lambda: _quickbooks(s))


def _scopes(s: Settings) -> str:
    from service.adapters.google_credentials import GMAIL_SCOPES, SHEETS_SCOPES, token_file

    needed = set(GMAIL_SCOPES) if s.drafts_backend == "gmail" else set()
    if s.google_sheets_spreadsheet_id:
        if s.google_service_account_file and not s.google_service_account_file.is_file():
            raise Problem(
                f"no service account key at {s.google_service_account_file}",
                "set GOOGLE_SERVICE_ACCOUNT_FILE to the key file Google gave",
            )
        if not s.google_service_account_file:
            needed |= set(SHEETS_SCOPES)
    path = token_file(s.google_token_file)
    if needed and not path.is_file():
        raise Problem(f"no token at {path}", "run `invoice-collector auth` on this machine")
    granted = set(json.loads(path.read_text()).get("scopes") or needed) if needed else set()
    if missing := sorted(needed - granted):
        raise Problem(
            f"{path} was not granted {', '.join(missing)}",
            "run `invoice-collector auth` again and tick every permission Google asks for",
        )
    names = sorted(scope.rsplit("/", 1)[-1] for scope in needed)
    return f"{path}: {', '.join(names)}" if needed else "a service account key for Sheets"


def _zone(s: Settings, zone: str, zone_from: str) -> str:
    if s.timezone_override and s.timezone_override != zone and zone_from != "machine":
        raise Problem(
            f"TIMEZONE={s.timezone_override}, but the sheet is in {zone}",
            f"unset TIMEZONE (the sheet's own zone is then used) or set TIMEZONE={zone}",
        )
    return f"{s.timezone_override or zone} ({'TIMEZONE' if s.timezone_override else zone_from})"


def _timer(s: Settings, path: Path, zone: str, now: dt.datetime) -> str:
    """Whether the installed timer fires inside the window, in the run's zone, today."""
    start, end = s.window_start, s.window_end
    fix_hour = f"{min(start + 1, end - 1):02d}:00:00 {zone}"
    fix = f"set OnCalendar=*-*-* {fix_hour} in {path}, then `systemctl daemon-reload`"
    match = _ON_CALENDAR.search(path.read_text(encoding="utf-8"))
    if match is None:
        raise Problem(f"{path} has no daily OnCalendar time", fix)
    hour, minute, timer_zone = int(match[1]), int(match[2]), match[3] or machine_timezone()
    fires = dt.datetime.combine(now.date(), dt.time(hour, minute), ZoneInfo(timer_zone))
    local = fires.astimezone(ZoneInfo(zone))
    said = f"{path.name} fires {hour:02d}:{minute:02d} {timer_zone} = {local:%H:%M} {zone}"
    if not start <= local.hour < end:
        raise Problem(f"{said}, outside the window {start:02d}–{end:02d}h: it never drafts", fix)
    return f"{said}, inside the window {start:02d}–{end:02d}h"


def _slack(s: Settings) -> str:
    url = urlparse(s.slack_webhook_url or "")
    if url.scheme != "https" or not url.netloc:
        raise Problem(
            "SLACK_WEBHOOK_URL is not an https address",
            "paste the https://hooks.slack.com/services/… URL of the Slack app's webhook",
        )
    amounts = ", ".join(f"{v} {k}" for k, v in s.slack_min_amount.items()) or "any amount"
    return f"alerts at stage 28+ from {amounts}"


def _stripe(s: Settings) -> str:
    if not (s.stripe_api_key or "").startswith(("sk_", "rk_")):
        raise Problem(
            "STRIPE_API_KEY is not a secret key", "use a secret (sk_…) or restricted (rk_…) key"
        )
    return "test mode" if "_test_" in (s.stripe_api_key or "") else "live mode"


def _quickbooks(s: Settings) -> str:
    names = ("QBO_REALM_ID", "QBO_CLIENT_ID", "QBO_CLIENT_SECRET")
    missing = [name for name in names if not getattr(s, name.lower())]
    if not (s.qbo_refresh_token or s.qbo_token_file.is_file()):
        missing.append("QBO_REFRESH_TOKEN")
    if missing:
        raise Problem(f"{', '.join(missing)} unset", "copy them from the Intuit developer app")
    return f"company {s.qbo_realm_id}; rotated tokens kept in {s.qbo_token_file}"
