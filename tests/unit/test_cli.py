"""`invoice-collector run`, `demo` and `auth` through click's CliRunner: tables, exit codes."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from service import cli
from service.config import PROJECT_ROOT, Settings
from tests.conftest import FIXED_NOW
from tests.fakes import FakeSink, transient

pytestmark = [pytest.mark.timeout(30), pytest.mark.usefixtures("restore_logging")]

EXAMPLE = PROJECT_ROOT / "examples" / "invoices.csv"


@pytest.fixture
def invoices(tmp_path: Path) -> Path:
    path = tmp_path / "invoices.csv"
    shutil.copyfile(EXAMPLE, path)
    return path


@pytest.fixture
def invoke(make_settings: Callable[..., Settings], invoices: Path) -> Callable[..., Result]:
    """Run the CLI with settings (env names) and a clock, as cron would: no terminal."""

    def run(
        *args: str,
        now: dt.datetime = FIXED_NOW,
        sink: Any = None,
        input: str | None = None,
        **env: str,
    ) -> Result:
        env.setdefault("INVOICES_FILE", str(invoices))
        obj = {"settings": make_settings(**env), "clock": lambda: now, "sink": sink}
        return CliRunner().invoke(cli.main, list(args), obj=obj, input=input)

    return run


def test_run_apply_prints_the_table_and_one_summary_line_and_exits_0(
    invoke: Callable[..., Result], invoices: Path, tmp_path: Path
) -> None:
    result = invoke("run", "--apply", "--today", "2026-11-24", TZ="Europe/Paris")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["row", "invoice", "days", "stage", "action", "reason"]
    assert any("INV-1001" in ln and "Drafted stage 7 reminder" in ln for ln in lines)
    assert any("INV-1011" in ln and "closed" in ln for ln in lines)
    assert any("INV-1021" in ln and "amount: is required" in ln for ln in lines)
    assert lines[-1].startswith("2026-11-24 in Europe/Paris (this machine's zone; set TIMEZONE")
    assert "11 drafted, 9 skipped, 4 with errors, 11 rows written back." in lines[-1]
    assert len(list((tmp_path / "Maildir" / "new").glob("*.eml"))) == 11
    assert "2026-11-24" in invoices.read_text()


def test_run_is_a_dry_run_unless_told_to_apply(
    invoke: Callable[..., Result], invoices: Path, tmp_path: Path
) -> None:
    before = invoices.read_bytes()
    result = invoke("run", "--today", "2026-11-24")

    assert result.exit_code == 0, result.output
    assert "DRY RUN, nothing created: 11 to draft" in result.output
    assert "--apply" in result.output
    assert invoices.read_bytes() == before
    assert not (tmp_path / "Maildir").exists()


def test_the_same_run_twice_a_day_drafts_nothing_the_second_time(
    invoke: Callable[..., Result], invoices: Path
) -> None:
    invoke("run", "--apply", "--today", "2026-11-24")
    after_first = invoices.read_bytes()
    again = invoke("run", "--apply", "--today", "2026-11-24")

    assert again.exit_code == 0
    assert "0 drafted" in again.output
    assert "0 rows written back" in again.output
    assert invoices.read_bytes() == after_first


def test_outside_the_window_the_run_exits_4_and_changes_nothing(
    invoke: Callable[..., Result], invoices: Path
) -> None:
    before = invoices.read_bytes()
    # 09:30 UTC is 04:30 in New York: before an 08:00–18:00 window there.
    result = invoke(
        "run", "--apply", WINDOW_START="8", WINDOW_END="18", TIMEZONE="America/New_York"
    )

    assert result.exit_code == cli.EXIT_OUTSIDE_WINDOW
    assert "Warning: outside the run window (08:00–18:00 America/New_York)" in result.stderr
    assert "--force" in result.output
    assert invoices.read_bytes() == before


def test_force_runs_outside_the_window(invoke: Callable[..., Result]) -> None:
    result = invoke(
        "run", "--apply", "--force", "--today", "2026-11-24", WINDOW_START="20", WINDOW_END="21"
    )
    assert result.exit_code == 0, result.output
    assert "11 drafted" in result.output


def test_inside_the_window_the_run_goes_ahead(invoke: Callable[..., Result]) -> None:
    result = invoke("run", "--today", "2026-11-24", WINDOW_START="9", WINDOW_END="10")
    assert result.exit_code == 0, result.output


def test_drafts_that_fail_exit_1_so_cron_retries(invoke: Callable[..., Result]) -> None:
    sink = FakeSink()
    sink.failures.extend([transient(), transient()])

    result = invoke("run", "--apply", "--today", "2026-11-24", sink=sink)

    assert result.exit_code == cli.EXIT_FAILED
    assert "9 drafted" in result.output
    assert result.output.count("could not be created") == 2


def test_bad_rows_fail_the_run_only_with_strict(invoke: Callable[..., Result]) -> None:
    assert invoke("run", "--today", "2026-11-24").exit_code == 0
    assert invoke("run", "--strict", "--today", "2026-11-24").exit_code == cli.EXIT_FAILED


def test_a_missing_invoices_file_is_a_configuration_error(
    invoke: Callable[..., Result], tmp_path: Path
) -> None:
    result = invoke("run", INVOICES_FILE=str(tmp_path / "nope.csv"))
    assert result.exit_code == cli.EXIT_CONFIG
    assert "nope.csv" in result.output


def test_a_sheet_without_credentials_exits_3_and_says_to_run_auth(
    invoke: Callable[..., Result], tmp_path: Path
) -> None:
    result = invoke(
        "run",
        GOOGLE_SHEETS_SPREADSHEET_ID="sheet-1",
        GOOGLE_TOKEN_FILE=str(tmp_path / "missing-token.json"),
    )
    assert result.exit_code == cli.EXIT_AUTH
    assert "invoice-collector auth" in result.output


def test_source_csv_overrides_a_configured_sheet(invoke: Callable[..., Result]) -> None:
    result = invoke("run", "--source", "csv", GOOGLE_SHEETS_SPREADSHEET_ID="sheet-1")
    assert result.exit_code == 0, result.output
    assert "file:" in result.stdout


def test_an_unknown_source_choice_is_a_usage_error(invoke: Callable[..., Result]) -> None:
    assert invoke("run", "--source", "xlsx").exit_code == 2


def test_run_json_prints_the_report_without_bodies(invoke: Callable[..., Result]) -> None:
    result = invoke("run", "--apply", "--json", "--today", "2026-11-24")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["summary"]["drafted"] == 11
    assert all("body" not in row for row in report["rows"])


def test_demo_drafts_eml_files_and_says_where_they_are(
    invoke: Callable[..., Result], tmp_path: Path
) -> None:
    demo = tmp_path / "demo"
    result = invoke("demo", "--dir", str(demo))

    assert result.exit_code == 0, result.output
    emls = list((demo / "Maildir" / "new").glob("*.eml"))
    assert len(emls) == 11
    assert f"11 drafts written as .eml files in {demo / 'Maildir' / 'new'}" in result.output
    assert "mutt -f" in result.output
    # Run again: a fresh copy, so it drafts again instead of reporting duplicates.
    again = invoke("demo", "--dir", str(demo))
    assert again.exit_code == 0
    assert len(list((demo / "Maildir" / "new").glob("*.eml"))) == 11


def test_demo_refuses_to_empty_a_directory_it_did_not_make(
    invoke: Callable[..., Result], tmp_path: Path
) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("keep me")

    result = invoke("demo", "--dir", str(precious))

    assert result.exit_code == cli.EXIT_CONFIG
    assert (precious / "thesis.txt").exists()


# -- auth -------------------------------------------------------------------------------------
class FakeCredentials:
    refresh_token = "1//refresh"

    def to_json(self) -> str:
        return json.dumps({"token": "ya29.x", "refresh_token": self.refresh_token})


class FakeFlow:
    """Stands in for google_auth_oauthlib's Flow at the network boundary."""

    def __init__(self) -> None:
        self.redirect_uri = ""
        self.fetched: dict[str, str] = {}
        self.credentials = FakeCredentials()

    def authorization_url(self, **kwargs: str) -> tuple[str, str]:
        assert kwargs["access_type"] == "offline"
        return "https://accounts.google.com/o/oauth2/auth?client_id=c", "state"

    def fetch_token(self, **kwargs: str) -> None:
        self.fetched = kwargs


def test_console_auth_accepts_the_pasted_redirect_address() -> None:
    flow = FakeFlow()
    cli.console_credentials(flow, 8085, lambda _: "http://localhost:8085/?state=s&code=4/abc")

    assert flow.redirect_uri == "http://localhost:8085/"
    # oauthlib insists on https; the loopback address never leaves the machine.
    assert flow.fetched == {"authorization_response": "https://localhost:8085/?state=s&code=4/abc"}


def test_console_auth_accepts_a_bare_code() -> None:
    flow = FakeFlow()
    cli.console_credentials(flow, 8085, lambda _: " 4/abc \n")
    assert flow.fetched == {"code": "4/abc"}


def test_auth_without_a_client_file_explains_where_to_get_one(
    invoke: Callable[..., Result], tmp_path: Path
) -> None:
    result = invoke("auth", "--no-browser", "--client-secrets", str(tmp_path / "none.json"))
    assert result.exit_code == cli.EXIT_CONFIG
    assert "Desktop app" in result.output


def test_auth_stores_the_token_readable_by_its_owner_only(
    invoke: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google_auth_oauthlib.flow import InstalledAppFlow

    secrets = tmp_path / "client_secret.json"
    secrets.write_text("{}")
    flow = FakeFlow()
    monkeypatch.setattr(
        InstalledAppFlow, "from_client_secrets_file", classmethod(lambda cls, *a, **k: flow)
    )
    token = tmp_path / "config" / "token.json"

    result = invoke(
        "auth",
        "--no-browser",
        "--client-secrets",
        str(secrets),
        input="http://localhost:8085/?code=4/abc\n",
        GOOGLE_TOKEN_FILE=str(token),
    )

    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert json.loads(token.read_text())["refresh_token"] == "1//refresh"
    assert "gmail.compose" in result.output


def test_drafts_lists_a_days_drafts_and_earlier_ones_never_sent(
    invoke: Callable[..., Result], tmp_path: Path
) -> None:
    assert invoke("run", "--apply", "--today", "2026-11-24").exit_code == 0
    today = invoke("drafts", "--json", TZ="UTC")  # the clock's day: 2026-11-24 in UTC

    assert today.exit_code == 0, today.output
    listed = json.loads(today.stdout)
    assert listed["date"] == "2026-11-24"
    drafts = {d["invoice_id"]: d for d in listed["drafts"]}
    assert len(drafts) == 11
    assert drafts["INV-1004"]["stage"] == 28
    assert drafts["INV-1004"]["to"] == ["accounts@kestrel.example.co.uk"]
    assert drafts["INV-1004"]["subject"].startswith("Action needed: invoice INV-1004")
    assert drafts["INV-1004"]["link"]
    assert all(d["in_drafts"] is True and "body" not in d for d in drafts.values())
    assert listed["unsent"] == []

    # The bookkeeper sent INV-1001's reminder from a mail client: it left the folder.
    sent = next(
        f for f in (tmp_path / "Maildir").glob("*/*") if "/INV-1001/7" in f.read_text()
    )  # the file named by its key header, wherever the Maildir keeps it
    sent.rename(tmp_path / "sent.eml")
    table = invoke("drafts", "--date", "2026-12-01")

    assert table.exit_code == 0, table.output
    assert "0 drafts made on 2026-12-01." in table.stdout
    waiting = table.stdout.split("Still in Drafts, never sent (10)")[1]
    assert "INV-1004     stage 28    7 days  accounts@kestrel.example.co.uk" in waiting
    assert "INV-1001" not in waiting
    on_the_day = invoke("drafts", "--date", "2026-11-24").stdout
    assert (
        next(ln for ln in on_the_day.splitlines() if ln.startswith("INV-1001")).split()[-2] == "no"
    )


def test_report_prints_aging_per_currency_top_clients_and_dso(
    invoke: Callable[..., Result],
) -> None:
    result = invoke("report", "--today", "2026-11-24")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[2].split() == ["open", "current", "1-30", "31-60", "61-90", "90+", "DSO", "(days)"]
    usd = next(ln for ln in lines if ln.startswith("USD "))
    assert usd.split() == [
        "USD", "$30,566.25", "$1,800.00", "$22,216.25", "$5,600.00", "$950.00", "$0.00", "67.6"
    ]  # fmt: skip
    assert "JPY       ¥185,000" in result.stdout
    assert "USD Canyon Solar $12,400.00, Maple & Oak Carpentry $5,600.00" in result.stdout

    as_json = json.loads(invoke("report", "--today", "2026-11-24", "--json").stdout)
    usd_json = next(a for a in as_json["aging"] if a["currency"] == "USD")
    assert (usd_json["open"]["amount"], usd_json["dso_days"]) == ("30566.25", "67.6")
