"""`invoice-collector doctor` on a working and on broken configurations, against the emulators."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from service import cli
from service.adapters.google_credentials import GMAIL_SCOPES, SHEETS_SCOPES
from service.adapters.migrate import upgrade
from service.config import Settings
from tests.emulators.gmail import GmailEmulator, running_gmail_emulator
from tests.emulators.sheets import SheetsEmulator, running_sheets_emulator

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("restore_logging")]

TOKEN = "ya29.doctor-token"
OWNER = "owner@example.com"
BOOK = "book-doctor"
HEADER = ["Invoice ID", "Client Name", "Client Email", "Amount", "Due Date", "Status"]
ROW = ["INV-1", "Ann", "ann@client.example.com", 100, dt.date(2026, 11, 1), "Open"]
NOW = dt.datetime(2026, 11, 24, 21, 0, tzinfo=dt.UTC)  # 10:00 on the 25th in Auckland


@pytest.fixture
def emulators() -> Iterator[tuple[SheetsEmulator, str, GmailEmulator, str]]:
    with (
        running_sheets_emulator(tokens=[TOKEN]) as (sheets, sheets_url),
        running_gmail_emulator(tokens={TOKEN: OWNER}) as (gmail, gmail_url),
    ):
        yield sheets, sheets_url, gmail, gmail_url


def token(path: Path, scopes: list[str]) -> Path:
    """A token file as `invoice-collector auth` writes it, granted ``scopes``."""
    path.write_text(
        json.dumps(
            {
                "token": TOKEN,
                "refresh_token": "1//refresh",
                "client_id": "client.apps.googleusercontent.com",
                "client_secret": "secret",
                "token_uri": "http://127.0.0.1:9/token",
                "expiry": "2099-01-01T00:00:00Z",
                "scopes": scopes,
            }
        )
    )
    return path


def timer(path: Path, on_calendar: str) -> Path:
    path.write_text(f"[Timer]\nOnCalendar={on_calendar}\nPersistent=true\n")
    return path


@pytest.fixture
def doctor(
    make_settings: Callable[..., Settings],
    emulators: tuple[SheetsEmulator, str, GmailEmulator, str],
) -> Callable[..., Result]:
    _, sheets_url, _, gmail_url = emulators

    def run(timer_file: Path, **env: str) -> Result:
        base = {
            "GOOGLE_SHEETS_SPREADSHEET_ID": BOOK,
            "GOOGLE_SHEETS_RANGE": "Invoices!A1:Z",
            "SHEETS_API_ENDPOINT": sheets_url,
            "GMAIL_API_ENDPOINT": gmail_url,
            "DRAFTS_BACKEND": "gmail",
            "GMAIL_SENDER": OWNER,
            "WINDOW_START": "8",
            "WINDOW_END": "18",
            "TZ": "UTC",
        }
        settings = make_settings(**{**base, **env})
        obj = {"settings": settings, "clock": lambda: NOW}
        return CliRunner().invoke(cli.main, ["doctor", "--timer", str(timer_file)], obj=obj)

    return run


def lines_of(result: Result) -> dict[str, str]:
    """check name -> its line."""
    out = {}
    for line in result.stdout.splitlines():
        verdict, _, rest = line.partition("  ")
        if verdict.strip() in ("ok", "FAIL"):
            out[rest.strip().split(":", 1)[0]] = line
    return out


def test_a_working_configuration_passes_every_check_and_exits_0(
    doctor: Callable[..., Result],
    emulators: tuple[SheetsEmulator, str, GmailEmulator, str],
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    sheets = emulators[0]
    sheets.add_sheet(BOOK, "Invoices", [HEADER, ROW], timezone="Pacific/Auckland")
    upgrade(make_settings().effective_database_url)

    result = doctor(
        timer(tmp_path / "ic.timer", "*-*-* 09:00:00 Pacific/Auckland"),
        GOOGLE_TOKEN_FILE=str(token(tmp_path / "token.json", SHEETS_SCOPES + GMAIL_SCOPES)),
        SLACK_WEBHOOK_URL="https://hooks.slack.com/services/T0/B0/X",
        SLACK_MIN_AMOUNT="1000 USD, 150000 JPY",
        STRIPE_API_KEY="sk_test_123",
    )

    assert result.exit_code == 0, result.output
    checks = lines_of(result)
    assert set(checks) == {
        "settings", "templates", "database", "google credentials", "gmail", "sheet",
        "time zone", "timer", "slack", "stripe",
    }  # fmt: skip
    assert all(line.startswith("ok") for line in checks.values()), result.output
    assert "Pacific/Auckland (spreadsheet)" in checks["time zone"]
    assert "= 09:00 Pacific/Auckland, inside the window 08–18h" in checks["timer"]
    assert f"drafts go to {OWNER}'s Drafts" in checks["gmail"]
    assert "sk_test_123" not in result.output  # a secret is never printed
    assert "10 of 10 checks pass." in result.stdout
    assert sheets.writes == 0  # the doctor reads; it never writes


def test_a_broken_configuration_fails_each_broken_check_with_its_fix_and_exits_1(
    doctor: Callable[..., Result],
    emulators: tuple[SheetsEmulator, str, GmailEmulator, str],
    tmp_path: Path,
) -> None:
    sheets = emulators[0]
    no_due_date: list[list[object]] = [[*HEADER[:4], *HEADER[5:]], [*ROW[:4], *ROW[5:]]]
    sheets.add_sheet(BOOK, "Invoices", no_due_date, timezone="Pacific/Auckland")

    result = doctor(
        # The old shipped timer: 09:00 on a UTC server is 22:00 in Auckland.
        timer(tmp_path / "ic.timer", "*-*-* 09:00:00"),
        GOOGLE_TOKEN_FILE=str(token(tmp_path / "token.json", GMAIL_SCOPES)),
        GMAIL_SENDER="someone.else@example.com",
        SLACK_WEBHOOK_URL="http://hooks.slack.com/services/T0/B0/X",
        STRIPE_API_KEY="pk_live_123",
        QBO_REALM_ID="1234",
    )

    assert result.exit_code == 1, result.output
    checks = lines_of(result)
    failed = {name for name, line in checks.items() if line.startswith("FAIL")}
    assert failed == {"google credentials", "gmail", "sheet", "slack", "stripe", "quickbooks"}
    assert "spreadsheets" in checks["google credentials"]
    assert "fix: run `invoice-collector auth` again" in checks["google credentials"]
    assert f"set GMAIL_SENDER={OWNER}" in checks["gmail"]
    assert "lacks due_date" in checks["sheet"]
    assert "fix: add the column(s) due_date to row 1" in checks["sheet"]
    assert "QBO_CLIENT_ID, QBO_CLIENT_SECRET, QBO_REFRESH_TOKEN unset" in checks["quickbooks"]
    assert "pk_live_123" not in result.output
    assert all(" → fix: " in checks[name] for name in failed)
    # A readable sheet is held against TIMEZONE and the timer; an unreadable one is not.
    assert "time zone" not in checks and "timer" not in checks


def test_timezone_against_the_sheet_and_the_timer_against_the_window(
    doctor: Callable[..., Result],
    emulators: tuple[SheetsEmulator, str, GmailEmulator, str],
    tmp_path: Path,
) -> None:
    emulators[0].add_sheet(BOOK, "Invoices", [HEADER, ROW], timezone="Pacific/Auckland")
    tokens = token(tmp_path / "token.json", SHEETS_SCOPES + GMAIL_SCOPES)

    new_york = {"GOOGLE_TOKEN_FILE": str(tokens), "TIMEZONE": "America/New_York"}
    pinned = lines_of(doctor(timer(tmp_path / "a.timer", "*-*-* 09:00:00"), **new_york))
    assert pinned["time zone"].startswith("FAIL")
    assert "TIMEZONE=America/New_York, but the sheet is in Pacific/Auckland" in pinned["time zone"]
    assert "set TIMEZONE=Pacific/Auckland" in pinned["time zone"]
    # 09:00 UTC is 04:00 in New York (TIMEZONE wins for the window): outside 08–18.
    assert pinned["timer"].startswith("FAIL")
    assert "fix: set OnCalendar=*-*-* 09:00:00 America/New_York" in pinned["timer"]

    timer_b = timer(tmp_path / "b.timer", "*-*-* 09:00:00")
    unset = lines_of(doctor(timer_b, GOOGLE_TOKEN_FILE=str(tokens)))
    assert unset["time zone"].startswith("ok")
    assert "= 22:00 Pacific/Auckland, outside the window 08–18h" in unset["timer"]
    assert "fix: set OnCalendar=*-*-* 09:00:00 Pacific/Auckland" in unset["timer"]


def test_a_broken_local_setup_names_the_database_the_maildir_and_the_file(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("")
    settings = make_settings(
        DATABASE_URL="postgresql+psycopg://nobody@127.0.0.1:1/none",
        MAILDIR_PATH=str(tmp_path / "a-file" / "Maildir"),
        INVOICES_FILE=str(tmp_path / "missing.csv"),
    )
    obj: dict[str, Any] = {"settings": settings, "clock": lambda: NOW}
    result = CliRunner().invoke(cli.main, ["doctor", "--timer", str(tmp_path / "none")], obj=obj)

    assert result.exit_code == 1, result.output
    checks = lines_of(result)
    assert checks["database"].startswith("FAIL") and "check DATABASE_URL" in checks["database"]
    assert checks["maildir"].startswith("FAIL") and "set MAILDIR_PATH" in checks["maildir"]
    assert checks["invoices file"].startswith("FAIL") and "INVOICES_FILE" in checks["invoices file"]
    assert "timer" not in checks  # none installed: nothing to hold against the window


def test_a_setting_that_does_not_load_is_one_failed_check(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setenv("WINDOW_START", "eight")
    result = CliRunner().invoke(cli.main, ["doctor", "--timer", str(tmp_path / "none")])

    assert result.exit_code == 1
    assert result.stdout.startswith("FAIL  settings: configuration: WINDOW_START")
    assert "fix: fix it in .env" in result.stdout
