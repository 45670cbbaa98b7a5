"""The ``invoice-collector`` command: wiring only, the work happens in the use cases.

Exit codes of ``run`` (and ``demo``), for cron and systemd to act on:

  0  the run completed (rows with bad data are listed, but fail only with ``--strict``)
  1  some rows could not be drafted or written back now; the next run retries them
  2  configuration error (a setting, the invoices file, the sheet range) — fix and rerun
  3  Google refused the credentials — run ``invoice-collector auth`` again
  4  outside WINDOW_START–WINDOW_END in TIMEZONE: nothing was done (``--force`` overrides)
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from service.bootstrap import Services, build_services
from service.config import PROJECT_ROOT, ConfigError, Settings, load_settings
from service.domain.dates import today_in
from service.logging_setup import configure_logging
from service.ports import AuthorizationError, utc_now
from service.usecases.plan import plan
from service.usecases.report import planned_row_dict, summarize
from service.usecases.run import RunReport, RunStatus, run_sheet

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_AUTH = 3
EXIT_OUTSIDE_WINDOW = 4

DEMO_DIR = PROJECT_ROOT / "var" / "demo"
DEMO_TODAY = dt.date(2026, 11, 24)  # the day examples/invoices.csv was written for

log = logging.getLogger(__name__)


class CliExit(click.ClickException):
    """A failure with a message and the exit code cron acts on."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        # click declares exit_code on the class but reads it from the instance.
        self.exit_code = exit_code  # type: ignore[misc]


def _settings(ctx: click.Context | None = None) -> Settings:
    """Settings given by the caller (tests) or loaded from the environment and `.env`."""
    obj = ctx.find_root().obj if ctx is not None else None
    if isinstance(obj, dict) and isinstance(obj.get("settings"), Settings):
        settings: Settings = obj["settings"]
        return settings
    try:
        return load_settings()
    except ConfigError as exc:
        raise CliExit(f"configuration: {exc}", EXIT_CONFIG) from exc


def _services(ctx: click.Context, settings: Settings) -> Services:
    """Services for ``settings``; tests may hand in a clock and a sink through ``obj``."""
    obj = ctx.find_root().obj if isinstance(ctx.find_root().obj, dict) else {}
    services = build_services(settings, clock=obj.get("clock", utc_now))
    services.sink_override = obj.get("sink")
    return services


@click.group()
@click.option(
    "--log-level",
    default=None,
    help="Override LOG_LEVEL (default: LOG_LEVEL, or WARNING when stderr is a terminal).",
)
@click.pass_context
def main(ctx: click.Context, log_level: str | None) -> None:
    """Drafts reminders for overdue invoices. Never sends."""
    try:
        settings: Settings | None = _settings(ctx)
    except CliExit:
        settings = None  # the command itself reports the configuration error
    level = log_level or (
        "WARNING" if sys.stderr.isatty() else (settings.log_level if settings else "INFO")
    )
    secret_values = (
        [*settings.api_keys, settings.slack_webhook_url or "", settings.stripe_api_key or ""]
        if settings
        else []
    )
    try:
        configure_logging(level, secrets=[s for s in secret_values if s])
    except ValueError as exc:
        raise CliExit(f"configuration: {exc}", EXIT_CONFIG) from exc
    # JSON log lines go to stderr so the table on stdout stays readable and pipeable.
    for handler in logging.getLogger().handlers:
        if handler.get_name() == "invoice_collector_json" and isinstance(
            handler, logging.StreamHandler
        ):
            handler.setStream(sys.stderr)


@main.command("init-env")
@click.option("--env-file", type=click.Path(path_type=Path), default=Path(".env"))
@click.option("--port", default=8000, show_default=True)
def init_env(env_file: Path, port: int) -> None:
    """Create `.env` with a random API key on first use, then print how to call the API."""
    key = None
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            if line.startswith("API_KEYS="):
                key = line.partition("=")[2].split(",")[0].strip() or None
    if key is None:
        key = secrets.token_urlsafe(32)
        with env_file.open("a", encoding="utf-8") as fh:
            fh.write(
                "# Written by `make serve` on first run. Keep it secret; see .env.example.\n"
                f"API_KEYS={key}\n"
            )
        env_file.chmod(0o600)
        click.echo(f"Wrote a new API key to {env_file}.")
    example = PROJECT_ROOT / "examples" / "plan-request.json"
    rel = example.relative_to(Path.cwd()) if example.is_relative_to(Path.cwd()) else example
    click.echo(
        f"\nAPI key: {key}\n\nTry it (in another terminal, from this directory):\n\n"
        f"  curl -s -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n"
        f"       -d @{rel} http://127.0.0.1:{port}/v1/plan \\\n"
        '    | python3 -c \'import json,sys; [print(r["invoice_id"], r["stage"], '
        'r["action"], r["reason"], sep="\\t") for r in json.load(sys.stdin)["rows"]]\'\n'
    )


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh))


def _print_table(rows: list[dict[str, Any]]) -> None:
    click.echo(f"{'row':>4}  {'invoice':<12} {'days':>4}  {'stage':>5}  {'action':<6} reason")
    for r in rows:
        days = "" if r["days_overdue"] is None else r["days_overdue"]
        click.echo(
            f"{r['row'] or '':>4}  {r['invoice_id'][:12]:<12} {days:>4}  "
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
    settings = _settings(ctx)
    services = _services(ctx, settings)
    day = today.date() if today else today_in(settings.timezone, services.clock())
    rows = _read_csv(file or settings.invoices_file)
    planned = plan(rows, today=day, settings=services.plan_settings, templates=services.templates)
    out = [planned_row_dict(p, locale=settings.locale, with_body=False) for p in planned]
    if as_json:
        json.dump({"today": day.isoformat(), "rows": out}, sys.stdout, indent=2, default=str)
        click.echo()
        return
    _print_table(out)
    s = summarize(out)
    click.echo(f"\n{day}: {s['draft']} to draft, {s['skip']} skipped, {s['error']} with errors")


@main.command("example-request")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--today", required=True, help="The date the example is planned for.")
def example_request(file: Path, today: str) -> None:
    """Print a /v1/plan request body for a CSV file (how examples/plan-request.json is made)."""
    rows: list[dict[str, Any]] = []
    for i, raw in enumerate(_read_csv(file), start=2):
        rows.append({"row": i, **raw})
    body = {"today": today, "timezone": "UTC", "scope": f"file:{file.name}", "invoices": rows}
    click.echo(json.dumps(body, indent=2, ensure_ascii=False))


# ---------------------------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------------------------
class _ProgressBar:
    """A progress callback that draws a click progress bar once the total is known."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._shown = 0

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            if not total:
                return
            # On stderr, so a table piped from stdout never carries the bar's redraws.
            self._bar = click.progressbar(length=total, label="Drafting", file=sys.stderr)
            self._bar.__enter__()
        self._bar.update(done - self._shown)
        self._shown = done

    def close(self) -> None:
        """Finish the bar's line."""
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A progress callback drawing a bar on a terminal, or None when not attached to one."""
    if not enabled:
        yield None
        return
    bar = _ProgressBar()
    try:
        yield bar
    finally:
        bar.close()


def _exit_code_for(exc: Exception) -> int | None:
    """The exit code for an error that stopped a run before it finished, or None."""
    from service.adapters.csvfile import CsvSourceError, FileChangedError, FileInUseError
    from service.adapters.intuit_auth import QuickBooksError
    from service.adapters.sheets import SheetsError

    if isinstance(exc, AuthorizationError):
        return EXIT_AUTH
    if isinstance(exc, ConfigError | FileNotFoundError | IsADirectoryError | PermissionError):
        return EXIT_CONFIG
    if isinstance(exc, FileChangedError | FileInUseError):
        return EXIT_FAILED
    if isinstance(exc, CsvSourceError):
        return EXIT_CONFIG
    if isinstance(exc, OSError):
        return EXIT_FAILED  # a full disk, a network hiccup: worth another try
    if isinstance(exc, QuickBooksError):
        return EXIT_FAILED if exc.code in {"rate_limited", "unavailable"} else EXIT_CONFIG
    if isinstance(exc, SheetsError):
        if exc.retryable:
            return EXIT_FAILED
        # 403 without a rate-limit reason: the sheet is not shared with this account.
        return EXIT_AUTH if exc.status == 403 else EXIT_CONFIG
    return None


def _summary_line(report: RunReport) -> str:
    s = report.summary
    head = f"{report.today} · {report.scope}"
    if report.dry_run:
        return (
            f"{head} · DRY RUN, nothing created: {s['draft']} to draft, {s['skip']} skipped, "
            f"{s['error']} with errors. Pass --apply to create the drafts."
        )
    line = (
        f"{head} · {report.drafted} drafted, {s['skip']} skipped, {s['error']} with errors, "
        f"{report.written} row{'s' if report.written != 1 else ''} written back"
    )
    if report.alerted:
        line += ", Slack alerted"
    return line + "."


def _run_exit_code(report: RunReport, strict: bool) -> int:
    if report.stopped is not None or report.write_error_code == "reauthorize":
        return EXIT_AUTH
    if report.failed or report.write_error:
        return EXIT_FAILED
    if strict and report.invalid:
        return EXIT_FAILED
    return EXIT_OK


def execute_run(
    services: Services,
    *,
    kind: str | None,
    today: dt.date | None,
    dry_run: bool,
    force: bool,
    as_json: bool = False,
    strict: bool = False,
) -> int:
    """Run over the configured source, print the table and summary; return the exit code."""
    try:
        source = services.source(kind)
        with _progress_bar(sys.stdout.isatty() and not as_json) as progress:
            report = run_sheet(
                source,
                ledger=services.ledger,
                sink=lambda: services.sink_for(None),
                templates=services.templates,
                settings=services.run_settings,
                clock=services.clock,
                today=today,
                dry_run=dry_run,
                force=force,
                notifier=services.notifier(),
                on_progress=progress,
                on_created=services.after_draft,
                payment_links=services.payment_links,
            )
    except Exception as exc:
        code = _exit_code_for(exc)
        if code is None:
            raise
        log.error("run failed", extra={"error_type": type(exc).__name__})
        hint = " Run `invoice-collector auth` again." if code == EXIT_AUTH else ""
        raise CliExit(f"{str(exc).rstrip('.')}.{hint}", code) from exc

    if report.status is RunStatus.OUTSIDE_WINDOW:
        window = services.run_settings.window
        click.echo(
            f"Outside the run window ({window.start:02d}:00–{window.end:02d}:00 "
            f"{window.timezone}): nothing done. Use --force to run anyway.",
            err=True,
        )
        return EXIT_OUTSIDE_WINDOW
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2, default=str, ensure_ascii=False))
    else:
        _print_table(list(report.rows))
        click.echo("")
        click.echo(_summary_line(report))
    if report.stopped is not None:
        click.echo("Gmail refused the credentials: run `invoice-collector auth` again.", err=True)
    if report.write_error:
        click.echo(
            f"Write-back failed ({report.write_error}); the next run writes these rows back.",
            err=True,
        )
    return _run_exit_code(report, strict)


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
    default=None,
    help="Default: sheets when GOOGLE_SHEETS_SPREADSHEET_ID is set, else INVOICES_FILE.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--strict", is_flag=True, help="Exit 1 when any row has bad data too.")
@click.pass_context
def run_cmd(
    ctx: click.Context,
    dry_run: bool | None,
    today: dt.datetime | None,
    force: bool,
    kind: str | None,
    as_json: bool,
    strict: bool,
) -> None:
    """Read the sheet, draft today's reminders, write back what was drafted.

    Exit codes: 0 ok · 1 some rows failed (retry later) · 2 configuration error ·
    3 Google credentials refused (run `auth`) · 4 outside the run window (use --force).
    """
    settings = _settings(ctx)
    services = _services(ctx, settings)
    code = execute_run(
        services,
        kind=kind,
        today=today.date() if today else None,
        dry_run=settings.dry_run if dry_run is None else dry_run,
        force=force,
        as_json=as_json,
        strict=strict,
    )
    ctx.exit(code)


# ---------------------------------------------------------------------------------------------
# auth
# ---------------------------------------------------------------------------------------------
def console_credentials(flow: Any, port: int, prompt: Callable[[str], str]) -> Any:
    """Authorise without a local browser: print the URL, read back the redirected address."""
    # Google retired the copy-the-code (OOB) flow; a loopback redirect still works when the
    # browser is on another machine: the page fails to load, but its address holds the code.
    flow.redirect_uri = f"http://localhost:{port}/"
    url, _ = flow.authorization_url(prompt="consent", access_type="offline")
    click.echo(
        "Open this URL in a browser on any machine and allow access:\n\n"
        f"  {url}\n\n"
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
            f"{client_secrets} not found. In the Google Cloud console, APIs & Services → "
            "Credentials → Create credentials → OAuth client ID → Desktop app, download the "
            "JSON and pass it with --client-secrets.",
            EXIT_CONFIG,
        )
    from google_auth_oauthlib.flow import InstalledAppFlow

    try:
        flow = InstalledAppFlow.from_client_secrets_file(str(client_secrets), scopes=ALL_SCOPES)
    except ValueError as exc:
        raise CliExit(f"{client_secrets} is not an OAuth client file: {exc}", EXIT_CONFIG) from exc
    try:
        if no_browser:
            credentials = console_credentials(flow, port, lambda text: click.prompt(text))
        else:
            credentials = flow.run_local_server(
                port=port, open_browser=True, prompt="consent", access_type="offline"
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


# ---------------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------------
def _shown(path: Path) -> str:
    """``path`` relative to the current directory when under it (shorter to copy)."""
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


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
    settings = _settings(ctx)
    directory = directory.resolve()
    if directory.exists():
        if not (directory / ".invoice-collector-demo").exists() and any(directory.iterdir()):
            raise CliExit(f"{directory} is not empty and is not a demo directory", EXIT_CONFIG)
        shutil.rmtree(directory)  # a fresh start each time, so every demo shows drafts
    directory.mkdir(parents=True)
    (directory / ".invoice-collector-demo").write_text("made by `invoice-collector demo`\n")
    invoices = directory / "invoices.csv"
    shutil.copyfile(PROJECT_ROOT / "examples" / "invoices.csv", invoices)
    maildir = directory / "Maildir"
    demo_settings = settings.with_overrides(
        invoices_file=invoices,
        drafts_backend="maildir",
        maildir_path=maildir,
        database_url=f"sqlite:///{directory / 'ledger.db'}",
        sends_log=directory / "logs" / "sends.csv",
        google_sheets_spreadsheet_id="",
        slack_webhook_url=None,
        stripe_api_key=None,  # the demo calls no outside service
        dry_run=False,
    )
    click.echo(f"Demo: `invoice-collector run --apply --force --today {DEMO_TODAY}` over")
    click.echo(f"{_shown(invoices)} (a copy of examples/invoices.csv)\n")
    code = execute_run(
        _services(ctx, demo_settings), kind="csv", today=DEMO_TODAY, dry_run=False, force=True
    )
    emls = sorted((maildir / "new").glob("*.eml"))
    click.echo(
        f"\n{len(emls)} draft{'s' if len(emls) != 1 else ''} written as .eml files in "
        f"{_shown(maildir / 'new')}\n"
        "Open one in any mail client (double-click it, or drag it into Thunderbird or Apple "
        "Mail),\nread it in the terminal with `less`, or browse them all with "
        f"`mutt -f {_shown(maildir)}`.\n"
        "The write-back (last_stage_sent, last_sent_at, reminder_status) is in "
        f"{_shown(invoices)};\nthe sends log in {_shown(directory / 'logs' / 'sends.csv')}."
    )
    for eml in emls[:3]:
        click.echo(f"  {_shown(eml)}")
    if len(emls) > 3:
        click.echo(f"  … and {len(emls) - 3} more")
    ctx.exit(code)


if __name__ == "__main__":
    main()
