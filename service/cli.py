"""The ``invoice-collector`` command: wiring only, the work happens in the use cases."""

from __future__ import annotations

import csv
import datetime as dt
import json
import secrets
import sys
from pathlib import Path
from typing import Any

import click

from service.bootstrap import build_services
from service.config import PROJECT_ROOT, ConfigError, load_settings
from service.domain.dates import today_in
from service.planning import plan
from service.results import planned_row_dict, summarize

EXIT_CONFIG = 2


def _settings() -> Any:
    try:
        return load_settings()
    except ConfigError as exc:
        raise click.ClickException(f"configuration: {exc}") from exc


@click.group()
def main() -> None:
    """Drafts reminders for overdue invoices. Never sends."""


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


@main.command("plan")
@click.argument(
    "file", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=False
)
@click.option("--today", type=click.DateTime(["%Y-%m-%d"]), help="The date to plan for.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
def plan_cmd(file: Path | None, today: dt.datetime | None, as_json: bool) -> None:
    """Show each invoice's stage and action for a CSV file (default: INVOICES_FILE)."""
    settings = _settings()
    services = build_services(settings)
    day = today.date() if today else today_in(settings.timezone, services.clock())
    rows = _read_csv(file or settings.invoices_file)
    planned = plan(rows, today=day, settings=services.plan_settings, templates=services.templates)
    out = [planned_row_dict(p, locale=settings.locale, with_body=False) for p in planned]
    if as_json:
        json.dump({"today": day.isoformat(), "rows": out}, sys.stdout, indent=2, default=str)
        click.echo()
        return
    click.echo(f"{'row':>4}  {'invoice':<12} {'days':>4}  {'stage':>5}  {'action':<6} reason")
    for r in out:
        days = "" if r["days_overdue"] is None else r["days_overdue"]
        click.echo(
            f"{r['row'] or '':>4}  {r['invoice_id'][:12]:<12} {days:>4}  "
            f"{r['stage'] or '':>5}  {r['action']:<6} {r['message']}"
        )
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


if __name__ == "__main__":
    main()
