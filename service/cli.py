"""The ``invoice-collector`` command: wiring only, the work happens in the use cases."""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import secrets
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import click
from dotenv import dotenv_values

from service.bootstrap import Services, build_services
from service.config import PROJECT_ROOT, ConfigError, Settings, load_settings
from service.domain.aging import BUCKETS
from service.domain.dates import today_in
from service.logging_setup import configure_logging
from service.ports import (
    AuthorizationError,
    DraftSink,
    InvoiceSource,
    LedgerEntry,
    SinkError,
    utc_now,
)
from service.usecases.plan import plan
from service.usecases.report import aging_report, planned_row_dict, summarize
from service.usecases.run import (
    ZONE_FROM_MACHINE,
    ZONE_FROM_SETTING,
    ZONE_FROM_SHEET,
    Progress,
    RunReport,
    RunStatus,
    run_timezone,
)

# Exit codes of `run` and `demo`, for cron and systemd to act on.
EXIT_OK = 0  # rows with bad data are listed, but fail the run only with --strict
EXIT_FAILED = 1  # some rows could not be drafted or written back now; the next run retries
EXIT_CONFIG = 2  # a setting, the invoices file, the sheet range: fix and rerun
EXIT_AUTH = 3  # Google refused the credentials: run `invoice-collector auth` again
EXIT_OUTSIDE_WINDOW = 4  # outside WINDOW_START–WINDOW_END in TIMEZONE: nothing was done

DEMO_DIR = PROJECT_ROOT / "var" / "demo"
DEMO_TODAY = dt.date(2026, 11, 24)  # the day examples/invoices.csv was written for

log = logging.getLogger(__name__)


class CliExit(click.ClickException):
    """A failure with a message and the exit code cron acts on."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        # click declares exit_code on the class but reads it from the instance.
        self.exit_code = exit_code  # type: ignore[misc]


def _settings(ctx: click.Context) -> Settings:
    """Settings given by the caller (tests), else loaded once from the environment and `.env`."""
    obj = ctx.ensure_object(dict)
    if not isinstance(obj.get("settings"), Settings):
        try:
            obj["settings"] = load_settings()
        except ConfigError as exc:
            raise CliExit(f"configuration: {exc}", EXIT_CONFIG) from exc
    return cast(Settings, obj["settings"])


def _services(ctx: click.Context, **overrides: Any) -> Services:
    """Services for the settings with ``overrides``; tests may hand in a clock and a sink."""
    obj = ctx.ensure_object(dict)
    services = build_services(replace(_settings(ctx), **overrides), clock=obj.get("clock", utc_now))
    services.sink_override = obj.get("sink")
    return services


def _shown(path: Path) -> str:
    """``path`` relative to the current directory when under it (shorter to copy)."""
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def _echo_json(body: object) -> None:
    click.echo(json.dumps(body, indent=2, default=str, ensure_ascii=False))


@click.group()
@click.option(
    "--log-level",
    help="Override LOG_LEVEL (default: LOG_LEVEL, or WARNING when stderr is a terminal).",
)
@click.pass_context
def main(ctx: click.Context, log_level: str | None) -> None:
    """Drafts reminders for overdue invoices. Never sends."""
    try:
        settings: Settings | None = _settings(ctx)
    except CliExit:
        settings = None  # the command itself reports the configuration error
    fallback = settings.log_level if settings else "INFO"
    level = log_level or ("WARNING" if sys.stderr.isatty() else fallback)
    masked = [*settings.api_keys, *settings.secrets] if settings else []
    try:
        # JSON log lines go to stderr so the table on stdout stays readable and pipeable.
        configure_logging(level, masked, stream=sys.stderr)
    except ValueError as exc:
        raise CliExit(f"configuration: {exc}", EXIT_CONFIG) from exc


@main.command("init-env")
@click.option("--env-file", type=click.Path(path_type=Path), default=Path(".env"))
@click.option("--port", default=8000, show_default=True)
def init_env(env_file: Path, port: int) -> None:
    """Create `.env` with a random API key on first use, then print how to call the API."""
    key = (dotenv_values(env_file).get("API_KEYS") or "").split(",")[0].strip()
    if not key:
        key = secrets.token_urlsafe(32)
        with env_file.open("a", encoding="utf-8") as fh:
            fh.write(
                "# Written by `make serve` on first run. Keep it secret; see .env.example.\n"
                f"API_KEYS={key}\n"
            )
        env_file.chmod(0o600)
        click.echo(f"Wrote a new API key to {env_file}.")
    example = _shown(PROJECT_ROOT / "examples" / "plan-request.json")
    click.echo(
        f"\nAPI key: {key}\n\nTry it (in another terminal, from this directory):\n\n"
        f"  curl -s -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n"
        f"       -d @{example} http://127.0.0.1:{port}/v1/plan \\\n"
        '    | python3 -c \'import json,sys; [print(r["invoice_id"], r["stage"], '
        'r["action"], r["reason"], sep="\\t") for r in json.load(sys.stdin)["rows"]]\'\n'
    )


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh))


def _print_table(rows: Iterable[dict[str, Any]]) -> None:
    click.echo(f"{'row':>4}  {'invoice':<12} {'days':>4}  {'stage':>5}  {'action':<6} reason")
    for r in rows:
        days = "" if r["days_overdue"] is None else r["days_overdue"]
        click.echo(
            f"{r['row'] or '':>4}  {r['invoice_id']:<12.12} {days:>4}  "
            f"{r['stage'] or '':>5}  {r['action']:<6} {r['message']}"
        )


@main.command("plan")
@click.argument(
    "file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=False
)
@click.option("--today", type=click.DateTime(["%Y-%m-%d"]), help="The date to plan for.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@click.pass_context
def plan_cmd(
    ctx: click.Context, file: Path | None, today: dt.datetime | None, as_json: bool
) -> None:
    """Show each invoice's stage and action for a CSV file (default: INVOICES_FILE)."""
    services = _services(ctx)
    settings = services.settings
    day = today.date() if today else today_in(settings.timezone, services.clock())
    rows = _read_csv(file or settings.invoices_file)
    planned = plan(rows, today=day, settings=services.plan_settings, templates=services.templates)
    out = [planned_row_dict(p, locale=settings.locale, with_body=False) for p in planned]
    if as_json:
        return _echo_json({"today": day.isoformat(), "rows": out})
    _print_table(out)
    s = summarize(out)
    click.echo(f"\n{day}: {s['draft']} to draft, {s['skip']} skipped, {s['error']} with errors")


@main.command("example-request")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--today", required=True, help="The date the example is planned for.")
def example_request(file: Path, today: str) -> None:
    """Print a /v1/plan request body for a CSV file (how examples/plan-request.json is made)."""
    rows = [{"row": i, **raw} for i, raw in enumerate(_read_csv(file), start=2)]
    _echo_json({"today": today, "timezone": "UTC", "scope": f"file:{file.name}", "invoices": rows})


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[Progress | None]:
    """A progress callback drawing a bar once the total is known, or None when not enabled."""
    with ExitStack() as stack:
        bars: list[Any] = []

        def progress(done: int, total: int) -> None:
            if not bars and total:
                # On stderr, so a table piped from stdout never carries the bar's redraws.
                bar = click.progressbar(length=total, label="Drafting", file=sys.stderr)
                bars.append(stack.enter_context(bar))
            for bar in bars:
                bar.update(done - bar.pos)

        yield progress if enabled else None


@contextmanager
def _stopped_as_exit(what: str) -> Iterator[None]:
    """An error that stops the command becomes its message and the exit code cron acts on."""
    try:
        yield
    except Exception as exc:
        from service.adapters.csvfile import CsvSourceError, FileChangedError, FileInUseError
        from service.adapters.intuit_auth import QuickBooksError
        from service.adapters.sheets import SheetsError

        if isinstance(exc, AuthorizationError):
            code = EXIT_AUTH
        elif isinstance(exc, ConfigError | FileNotFoundError | IsADirectoryError | PermissionError):
            code = EXIT_CONFIG
        # A full disk, a network hiccup, a file being edited meanwhile: worth another try.
        elif isinstance(exc, OSError | FileChangedError | FileInUseError):
            code = EXIT_FAILED
        elif isinstance(exc, CsvSourceError):
            code = EXIT_CONFIG
        elif isinstance(exc, QuickBooksError):
            code = EXIT_FAILED if exc.code in {"rate_limited", "unavailable"} else EXIT_CONFIG
        elif isinstance(exc, SheetsError):
            # 403 without a rate-limit reason: the sheet is not shared with this account.
            code = EXIT_FAILED if exc.retryable else EXIT_AUTH if exc.status == 403 else EXIT_CONFIG
        else:
            raise
        log.error("command failed", extra={"command": what, "error_type": type(exc).__name__})
        hint = " Run `invoice-collector auth` again." if code == EXIT_AUTH else ""
        raise CliExit(f"{str(exc).rstrip('.')}.{hint}", code) from exc


# How a run's summary says whose zone its "today" is in.
_ZONE_SAID = {
    ZONE_FROM_SETTING: "TIMEZONE",
    ZONE_FROM_SHEET: "the spreadsheet's zone",
    ZONE_FROM_MACHINE: "this machine's zone; set TIMEZONE to choose",
}


def _summary_line(report: RunReport) -> str:
    s = report.summary
    said = _ZONE_SAID.get(report.timezone_from, report.timezone_from)
    head = f"{report.today} in {report.timezone} ({said}) · {report.scope}"
    if report.dry_run:
        return (
            f"{head} · DRY RUN, nothing created: {s['draft']} to draft, {s['skip']} skipped, "
            f"{s['error']} with errors. Pass --apply to create the drafts."
        )
    return (
        f"{head} · {report.drafted} drafted, {s['skip']} skipped, {s['error']} with errors, "
        f"{report.written} row{'s' if report.written != 1 else ''} written back"
        f"{', Slack alerted' if report.alerted else ''}."
    )


def execute_run(
    services: Services,
    kind: str | None,
    today: dt.date | None,
    *,
    dry_run: bool,
    force: bool,
    as_json: bool = False,
    strict: bool = False,
) -> int:
    """Run over the configured source, print the table and summary; return the exit code."""
    with _stopped_as_exit("run"):
        source = services.source(kind)
        with _progress_bar(sys.stdout.isatty() and not as_json) as progress:
            report = services.run(source, progress, today=today, dry_run=dry_run, force=force)

    if report.status is RunStatus.OUTSIDE_WINDOW:
        window = services.run_settings.window
        click.echo(
            f"Warning: outside the run window ({window.start:02d}:00–{window.end:02d}:00 "
            f"{report.timezone}): nothing done. Fire the timer inside it (see `invoice-"
            "collector doctor`), or use --force to run anyway.",
            err=True,
        )
        return EXIT_OUTSIDE_WINDOW
    if as_json:
        _echo_json(report.as_dict())
    else:
        _print_table(report.rows)
        click.echo("\n" + _summary_line(report))
    if report.stopped is not None:
        click.echo("Gmail refused the credentials: run `invoice-collector auth` again.", err=True)
    if report.write_error:
        click.echo(
            f"Write-back failed ({report.write_error}); the next run writes these rows back.",
            err=True,
        )
    if report.stopped is not None or report.write_error_code == "reauthorize":
        return EXIT_AUTH
    if report.failed or report.write_error or (strict and report.invalid):
        return EXIT_FAILED
    return EXIT_OK


@main.command("run")
@click.option(
    "--dry-run/--apply",
    "dry_run",
    default=None,
    help="Only show what would be drafted (default: DRY_RUN, true unless set), or create drafts.",
)
@click.option("--today", type=click.DateTime(["%Y-%m-%d"]), help="The spreadsheet's date.")
@click.option("--force", is_flag=True, help="Run even outside WINDOW_START–WINDOW_END.")
@click.option(
    "--source",
    "kind",
    type=click.Choice(["csv", "sheets", "quickbooks"]),
    help="Default: sheets when GOOGLE_SHEETS_SPREADSHEET_ID is set, else INVOICES_FILE.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--strict", is_flag=True, help="Exit 1 when any row has bad data too.")
@click.pass_context
def run_cmd(
    ctx: click.Context,
    /,
    dry_run: bool | None,
    today: dt.datetime | None,
    kind: str | None,
    **options: bool,
) -> None:
    """Read the sheet, draft today's reminders, write back what was drafted.

    Exit codes: 0 ok · 1 some rows failed (retry later) · 2 configuration error ·
    3 Google credentials refused (run `auth`) · 4 outside the run window (use --force).
    """
    services = _services(ctx)
    dry_run = services.settings.dry_run if dry_run is None else dry_run
    ctx.exit(execute_run(services, kind, today and today.date(), dry_run=dry_run, **options))


def _waiting(sink: DraftSink | None, entry: LedgerEntry) -> bool | None:
    """Whether the draft still waits unsent in Drafts; None when this sink cannot tell."""
    if sink is not None and entry.mailbox == sink.mailbox:  # never another user's Gmail
        with suppress(SinkError):
            return sink.in_drafts(entry)
    return None


def _draft_dict(entry: LedgerEntry, **extra: object) -> dict[str, object]:
    """A ledger entry as `drafts --json` prints it: metadata, never a body."""
    return {
        "invoice_id": entry.key.invoice_id,
        "stage": entry.key.stage,
        "to": list(entry.recipients),
        "subject": entry.subject,
        "drafted_on": entry.drafted_on,
        "link": entry.draft_url,
        **extra,
    }


def _today(services: Services, source: InvoiceSource, day: dt.datetime | None) -> dt.date:
    """``day``, else today where the run would say it is (the sheet's zone, TIMEZONE…)."""
    if day:
        return day.date()
    return today_in(run_timezone(source, services.run_settings)[0], services.clock())


@main.command("drafts")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), help="Default: today.")
@click.option("--json", "as_json", is_flag=True, help="Print them as JSON.")
@click.pass_context
def drafts_cmd(ctx: click.Context, day: dt.datetime | None, as_json: bool) -> None:
    """List a day's drafts from the ledger, and earlier reminders still waiting unsent."""
    services = _services(ctx)
    with _stopped_as_exit("drafts"):
        date = _today(services, services.source(), day)
        try:
            sink: DraftSink | None = services.sink_for(None)
        except AuthorizationError:  # no Gmail credentials here: the drafts, but not their fate
            sink = None
            click.echo("No Gmail credentials: whether drafts were sent is not shown.", err=True)
        made = [(e, at, _waiting(sink, e)) for e, at in services.draft_review.drafted_on(date)]
        # Only each invoice's latest reminder: an earlier one was superseded, sent or not.
        unsent = [e for e, _ in services.draft_review.latest_before(date) if _waiting(sink, e)]
    if as_json:
        drafts = [_draft_dict(e, created=at, in_drafts=waits) for e, at, waits in made]
        waiting = [
            _draft_dict(e, days_waiting=(date - e.drafted_on).days) for e in unsent if e.drafted_on
        ]
        return _echo_json({"date": date, "drafts": drafts, "unsent": waiting})
    said = {True: "yes", False: "no", None: "?"}  # no: sent, or deleted
    click.echo(
        f"{'invoice':<12} {'stage':>5}  {'recipient':<28} {'subject':<40} {'created (UTC)':<16}  "
        "in Drafts  link"
    )
    for e, at, waits in made:
        click.echo(
            f"{e.key.invoice_id:<12.12} {e.key.stage:>5}  {', '.join(e.recipients):<28.28} "
            f"{e.subject or '':<40.40} {at:%Y-%m-%d %H:%M}  {said[waits]:<10} {e.draft_url or ''}"
        )
    click.echo(f"\n{len(made)} draft{'s' if len(made) != 1 else ''} made on {date}.")
    if unsent:
        click.echo(f"\nStill in Drafts, never sent ({len(unsent)}): the next stage waits for them.")
        for e in unsent:
            days = (date - e.drafted_on).days if e.drafted_on else "?"
            click.echo(
                f"  {e.key.invoice_id:<12} stage {e.key.stage:>2}  {days:>3} days  "
                f"{', '.join(e.recipients)}  {e.draft_url or ''}"
            )


@main.command("report")
@click.option("--today", type=click.DateTime(["%Y-%m-%d"]), help="The date to age from.")
@click.option("--source", "kind", type=click.Choice(["csv", "sheets", "quickbooks"]))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def report_cmd(
    ctx: click.Context, today: dt.datetime | None, kind: str | None, as_json: bool
) -> None:
    """Aging of open balances per currency, the top overdue clients and DSO."""
    services = _services(ctx)
    with _stopped_as_exit("report"):
        source = services.source(kind)
        day = _today(services, source, today)
        snapshot = source.read()
    rows = [{**row.values, "row": row.row} for row in snapshot.rows]
    planned = plan(
        rows, today=day, settings=services.plan_settings, templates=services.templates, render=False
    )
    aging = aging_report(planned, day, services.settings.locale)
    if as_json:
        return _echo_json({"today": day.isoformat(), "scope": snapshot.scope, "aging": aging})
    click.echo(f"Open balances by days past due, {day} · {snapshot.scope}\n")
    buckets = [label for label, *_ in BUCKETS]
    click.echo(f"{'':<4}" + "".join(f"{h:>14}" for h in ["open", *buckets]) + "  DSO (days)")
    for a in aging:
        amounts = "".join(f"{m['formatted']:>14}" for m in [a["open"], *a["buckets"]])
        click.echo(f"{a['currency']:<4}{amounts}  {a['dso_days'] or a['dso_note']}")
    click.echo("\nTop overdue clients:")
    for a in aging:
        top = ", ".join(f"{c['client_name']} {c['formatted']}" for c in a["top_clients"])
        click.echo(f"{a['currency']:<4}{top or 'none'}")


@main.command("doctor")
@click.option(
    "--timer",
    "timers",
    multiple=True,
    type=click.Path(path_type=Path),
    help="The systemd timer to hold against the window (default: the installed one, if any).",
)
@click.pass_context
def doctor_cmd(ctx: click.Context, timers: tuple[Path, ...]) -> None:
    """Check the configuration end to end, one line per check with its fix; exit 0 if all pass."""
    from service.doctor import TIMERS, Check, diagnose

    try:
        settings = _settings(ctx)
    except CliExit as exc:
        checks = [Check("settings", False, exc.message, "fix it in .env (see .env.example)")]
    else:
        clock = ctx.ensure_object(dict).get("clock", utc_now)
        checks = list(diagnose(settings, clock=clock, timers=timers or TIMERS))
    for check in checks:
        line = f"{'ok' if check.ok else 'FAIL':<4}  {check.name}: {check.found}"
        click.echo(line + (f" → fix: {check.fix}" if check.fix else ""))
    failed = sum(not check.ok for check in checks)
    click.echo(f"\n{len(checks) - failed} of {len(checks)} checks pass.")
    ctx.exit(EXIT_FAILED if failed else EXIT_OK)


def console_credentials(flow: Any, port: int, prompt: Callable[[str], str]) -> Any:
    """Authorise without a local browser: print the URL, read back the redirected address."""
    # Google retired the copy-the-code (OOB) flow; a loopback redirect still works when the
    # browser is on another machine: the page fails to load, but its address holds the code.
    flow.redirect_uri = f"http://localhost:{port}/"
    url, _ = flow.authorization_url(prompt="consent", access_type="offline")
    click.echo(
        f"Open this URL in a browser on any machine and allow access:\n\n  {url}\n\n"
        f"The browser then tries to open http://localhost:{port}/?… and shows an error page:\n"
        "that is expected. Copy the whole address from its address bar and paste it here."
    )
    answer = prompt("Redirected address (or just the code)").strip()
    if answer.startswith("http"):
        # oauthlib refuses plain-http responses; the loopback address is never on the wire.
        flow.fetch_token(authorization_response=answer.replace("http://", "https://", 1))
    else:
        flow.fetch_token(code=answer)
    return flow.credentials


@main.command("auth")
@click.option(
    "--client-secrets",
    type=click.Path(path_type=Path),
    default=Path("client_secret.json"),
    show_default=True,
    help="The OAuth client (type: Desktop app) downloaded from the Google Cloud console.",
)
@click.option("--no-browser", is_flag=True, help="For SSH: print the URL, paste back the redirect.")
@click.option("--port", default=8085, show_default=True, help="The loopback redirect port.")
@click.pass_context
def auth_cmd(ctx: click.Context, client_secrets: Path, no_browser: bool, port: int) -> None:
    """Authorise headless runs: Sheets (spreadsheets) and Gmail drafts (gmail.compose)."""
    from service.adapters.google_credentials import ALL_SCOPES, save_token, token_file

    settings = _settings(ctx)
    if not client_secrets.is_file():
        raise CliExit(
            f"{client_secrets} not found. Create an OAuth client ID (Desktop app) in the Google "
            "Cloud console's APIs & Services → Credentials, download it, pass --client-secrets.",
            EXIT_CONFIG,
        )
    from google_auth_oauthlib.flow import InstalledAppFlow

    try:
        flow = InstalledAppFlow.from_client_secrets_file(str(client_secrets), scopes=ALL_SCOPES)
    except ValueError as exc:
        raise CliExit(f"{client_secrets} is not an OAuth client file: {exc}", EXIT_CONFIG) from exc
    try:
        credentials = (
            console_credentials(flow, port, click.prompt)
            if no_browser
            else flow.run_local_server(port=port, prompt="consent", access_type="offline")
        )
    except Exception as exc:
        # oauthlib's errors (invalid_grant, mismatching state…) name the problem; no secrets.
        raise CliExit(f"authorisation failed: {exc}", EXIT_AUTH) from exc
    path = token_file(settings.google_token_file)
    save_token(path, credentials.to_json())
    click.echo(f"Saved the token to {path} (mode 0600). Scopes: {', '.join(ALL_SCOPES)}")
    if not getattr(credentials, "refresh_token", None):
        click.echo(
            "Warning: Google returned no refresh token; remove the app's access at "
            "https://myaccount.google.com/permissions and run `auth` again.",
            err=True,
        )


@main.command("demo")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEMO_DIR,
    show_default=True,
    help="Where the demo's copy, Maildir and database go (emptied first).",
)
@click.pass_context
def demo_cmd(ctx: click.Context, directory: Path) -> None:
    """A headless run over a copy of examples/invoices.csv, drafting into a local Maildir."""
    directory = directory.resolve()
    mark = directory / ".invoice-collector-demo"
    if directory.exists():
        if not mark.exists() and any(directory.iterdir()):
            raise CliExit(f"{directory} is not empty and is not a demo directory", EXIT_CONFIG)
        shutil.rmtree(directory)  # a fresh start each time, so every demo shows drafts
    directory.mkdir(parents=True)
    mark.write_text("made by `invoice-collector demo`\n")
    invoices, maildir = directory / "invoices.csv", directory / "Maildir"
    shutil.copyfile(PROJECT_ROOT / "examples" / "invoices.csv", invoices)
    sends = directory / "logs" / "sends.csv"
    services = _services(
        ctx,
        invoices_file=invoices,
        drafts_backend="maildir",
        maildir_path=maildir,
        database_url=f"sqlite:///{directory / 'ledger.db'}",
        sends_log=sends,
        google_sheets_spreadsheet_id="",
        slack_webhook_url=None,
        stripe_api_key=None,  # the demo calls no outside service
        dry_run=False,
    )
    click.echo(f"Demo: `invoice-collector run --apply --force --today {DEMO_TODAY}` over")
    click.echo(f"{_shown(invoices)} (a copy of examples/invoices.csv)\n")
    code = execute_run(services, "csv", DEMO_TODAY, dry_run=False, force=True)
    emls = sorted((maildir / "new").glob("*.eml"))
    click.echo(
        f"\n{len(emls)} draft{'s' if len(emls) != 1 else ''} written as .eml files in "
        f"{_shown(maildir / 'new')}\nOpen one in any mail client (double-click it, or drag it "
        "into Thunderbird or Apple Mail), read it with `less`, or browse them all with "
        f"`mutt -f {_shown(maildir)}`.\nThe write-back (last_stage_sent, last_sent_at, "
        f"reminder_status) is in {_shown(invoices)}; the sends log in {_shown(sends)}."
    )
    for eml in emls[:3]:
        click.echo(f"  {_shown(eml)}")
    if len(emls) > 3:
        click.echo(f"  … and {len(emls) - 3} more")
    ctx.exit(code)


if __name__ == "__main__":
    main()
