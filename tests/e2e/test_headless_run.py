"""The owner's path end to end: `invoice-collector run` against the Sheets and Gmail emulators.

The real google-api-python-client talks HTTP to both emulators; credentials come from a token
file as `invoice-collector auth` writes it. 300 invoices → one values.get, one batchUpdate,
the right drafts in Gmail, the write-back in the sheet; the same run again → nothing.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from service import cli
from service.adapters.sheets import column_letters
from service.config import Settings
from tests.conftest import FIXED_NOW
from tests.e2e.sheets_log import running_sheets_with_append
from tests.emulators.gmail import GmailEmulator, running_gmail_emulator
from tests.emulators.sheets import SheetsEmulator, running_sheets_emulator, to_serial

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.slow,
    pytest.mark.usefixtures("restore_logging"),
]

TOKEN = "ya29.headless-test-token"
OWNER = "owner@example.com"
BOOK = "book-300"
TAB = "Overdue Invoices"  # a title with a space: every range must be quoted
TODAY = dt.date(2026, 11, 24)  # FIXED_NOW (09:30 UTC) is 04:30 on the 24th in New York
STAGES = (7, 14, 21, 28, 35, 42)
HEADER = [
    "Invoice ID",
    "Client Name",
    "Client Email",
    "Amount",
    "Currency",
    "Due Date",
    "Status",
    "Notes",
    "last_stage_sent",
    "last_sent_at",
    "reminder_status",
]
STATUSES = ["Overdue", "Open", "Sent", "Paid", "Overdue", "Disputed", "Unpaid"]
CLOSED = {"Paid", "Disputed"}


def invoice(n: int) -> list[object]:
    """Invoice ``n``: due between 10 days ahead and 60 days ago, some closed, some drafted."""
    due = TODAY - dt.timedelta(days=(n * 7) % 71 - 10)
    status = STATUSES[n % len(STATUSES)]
    # Every fifth invoice was drafted at stage 7 last week: only a later stage is due now.
    drafted = n % 5 == 0 and (TODAY - due).days >= 7
    return [
        f"INV-{n:04d}",
        f"Client {n % 40}",
        f"ap{n % 40}@client.example.com",
        100 + n,
        "USD",
        due,
        status,
        f"note {n}",
        7 if drafted else "",
        TODAY - dt.timedelta(days=7) if drafted else "",
        "",
    ]


def expected_keys(rows: list[list[object]]) -> set[str]:
    """The drafts DESIGN §4 calls for, worked out independently of the engine."""
    keys = set()
    for row in rows:
        due, status, last = row[5], row[6], row[8]
        assert isinstance(due, dt.date)
        days = (TODAY - due).days
        stage = max((s for s in STAGES if s <= days), default=None)
        if status in CLOSED or stage is None or (last != "" and int(str(last)) >= stage):
            continue
        keys.add(f"{BOOK}/{row[0]}/{stage}")
    return keys


@pytest.fixture
def emulators() -> Iterator[tuple[SheetsEmulator, str, GmailEmulator, str]]:
    with (
        running_sheets_emulator(tokens=[TOKEN]) as (sheets, sheets_url),
        running_gmail_emulator(tokens={TOKEN: OWNER}) as (gmail, gmail_url),
    ):
        yield sheets, sheets_url, gmail, gmail_url


@pytest.fixture
def token_file(tmp_path: Path, emulators: tuple[Any, str, Any, str]) -> Path:
    """An authorised-user token as `invoice-collector auth` stores it, still valid."""
    path = tmp_path / "token.json"
    path.write_text(
        json.dumps(
            {
                "token": TOKEN,
                "refresh_token": "1//refresh-not-needed",
                "client_id": "client.apps.googleusercontent.com",
                "client_secret": "secret",
                "token_uri": emulators[3] + "token",
                "expiry": "2099-01-01T00:00:00Z",
            }
        )
    )
    path.chmod(0o600)
    return path


@pytest.fixture
def run_cli(
    make_settings: Callable[..., Settings],
    emulators: tuple[SheetsEmulator, str, GmailEmulator, str],
    token_file: Path,
) -> Callable[..., Result]:
    _, sheets_url, _, gmail_url = emulators
    settings = make_settings(
        GOOGLE_SHEETS_SPREADSHEET_ID=BOOK,
        GOOGLE_SHEETS_RANGE=f"'{TAB}'!A1:Z",
        SHEETS_API_ENDPOINT=sheets_url,
        GMAIL_API_ENDPOINT=gmail_url,
        DRAFTS_BACKEND="gmail",
        GMAIL_SENDER=OWNER,
        GOOGLE_TOKEN_FILE=str(token_file),
        TIMEZONE="America/New_York",
        GMAIL_DRAFTS_PER_SECOND="500",  # the emulator's quota, not Google's pacing, is the limit
    )

    def run(*args: str) -> Result:
        obj = {"settings": settings, "clock": lambda: FIXED_NOW}
        return CliRunner().invoke(cli.main, ["run", *args], obj=obj)

    run.settings = settings  # type: ignore[attr-defined]
    return run


def column(grid: list[list[Any]], name: str) -> dict[str, Any]:
    """invoice id -> the cell under ``name``."""
    col = grid[0].index(name)
    return {row[0]: (row[col] if col < len(row) else "") for row in grid[1:]}


def test_300_invoices_take_two_reads_one_write_and_draft_exactly_whats_due(
    emulators: tuple[SheetsEmulator, str, GmailEmulator, str],
    run_cli: Callable[..., Result],
) -> None:
    sheets, _, gmail, _ = emulators
    rows = [invoice(n) for n in range(1, 301)]
    sheets.add_sheet(BOOK, TAB, [HEADER, *rows], timezone="America/New_York")
    untouched_before = [r[:8] for r in sheets.grid(BOOK, TAB)]
    expected = expected_keys(rows)
    assert 100 < len(expected) < 250  # the data mixes drafts, skips and later stages

    result = run_cli("--apply")

    assert result.exit_code == 0, result.output
    # The read, and the re-read just before the write that finds where each invoice is now.
    assert sheets.count("values.get") == 2
    assert sheets.count("values.batchUpdate") == 1
    assert sheets.count("spreadsheets.get") == 0  # TIMEZONE configured: no metadata read
    assert {d.key for d in gmail.drafts_for(OWNER)} == expected
    assert len(gmail.drafts_for(OWNER)) == len(expected)
    assert f"{len(expected)} drafted" in result.stdout
    assert f"{len(expected)} rows written back" in result.stdout

    grid = sheets.grid(BOOK, TAB)
    stages, sent_on, status = (
        column(grid, "last_stage_sent"),
        column(grid, "last_sent_at"),
        column(grid, "reminder_status"),
    )
    for key in expected:
        _, invoice_id, stage = key.split("/")
        assert stages[invoice_id] == int(stage)
        assert sent_on[invoice_id] == to_serial(TODAY)  # a real date cell
        assert status[invoice_id].startswith(f"Drafted stage {stage} reminder")
    drafted_ids = {k.split("/")[1] for k in expected}
    for row in rows:
        if row[0] not in drafted_ids:
            assert status[str(row[0])] == ""
    assert [r[:8] for r in grid] == untouched_before  # input columns never rewritten

    # reminder_status links to the draft: a HYPERLINK formula whose text is the status.
    status_col = column_letters(grid[0].index("reminder_status"))
    first_drafted = next(i for i, r in enumerate(grid) if str(r[0]) in drafted_ids) + 1
    cell = sheets.cell(BOOK, f"'{TAB}'!{status_col}{first_drafted}")
    assert cell is not None and cell.formula is not None
    assert cell.formula.startswith('=HYPERLINK("https://mail.google.com/')
    assert str(cell.value).startswith("Drafted stage")

    # A draft in Gmail is what the template says, addressed to the row's client.
    message = gmail.drafts_for(OWNER)[0].message()
    assert message["To"].endswith("@client.example.com")
    assert message["From"].endswith(f"<{OWNER}>") or OWNER in message["From"]


def test_the_same_run_again_the_same_day_drafts_nothing_and_writes_nothing(
    emulators: tuple[SheetsEmulator, str, GmailEmulator, str],
    run_cli: Callable[..., Result],
) -> None:
    sheets, _, gmail, _ = emulators
    sheets.add_sheet(BOOK, TAB, [HEADER, *(invoice(n) for n in range(1, 301))])
    first = run_cli("--apply")
    assert first.exit_code == 0, first.output
    drafts, grid = len(gmail.drafts_for(OWNER)), sheets.grid(BOOK, TAB)
    sheets.reset_calls()

    again = run_cli("--apply")

    assert again.exit_code == 0, again.output
    assert len(gmail.drafts_for(OWNER)) == drafts
    assert sheets.count("values.get") == 1
    assert sheets.count("values.batchUpdate") == 0
    assert sheets.grid(BOOK, TAB) == grid
    assert "0 drafted" in again.stdout
    assert "0 rows written back" in again.stdout


def test_a_dry_run_reads_once_and_touches_neither_gmail_nor_the_sheet(
    emulators: tuple[SheetsEmulator, str, GmailEmulator, str],
    run_cli: Callable[..., Result],
) -> None:
    sheets, _, gmail, _ = emulators
    sheets.add_sheet(BOOK, TAB, [HEADER, *(invoice(n) for n in range(1, 301))])

    result = run_cli("--dry-run")

    assert result.exit_code == 0, result.output
    assert "DRY RUN" in result.stdout
    assert sheets.count("values.get") == 1
    assert sheets.writes == 0
    assert gmail.drafts_for(OWNER) == []


def test_a_sheet_not_shared_with_the_account_exits_3(
    emulators: tuple[SheetsEmulator, str, GmailEmulator, str],
    run_cli: Callable[..., Result],
) -> None:
    sheets, _, gmail, _ = emulators
    sheets.add_sheet(BOOK, TAB, [HEADER, invoice(1)])
    sheets.fail_next(403, method="values.get")  # PERMISSION_DENIED: not shared with us

    result = run_cli("--apply")

    assert result.exit_code == cli.EXIT_AUTH, result.output
    assert "Sheets API answered 403" in result.output
    assert gmail.drafts_for(OWNER) == []


def test_a_sheets_outage_exits_1_so_the_next_run_retries(
    emulators: tuple[SheetsEmulator, str, GmailEmulator, str],
    run_cli: Callable[..., Result],
) -> None:
    sheets, _, gmail, _ = emulators
    sheets.add_sheet(BOOK, TAB, [HEADER, invoice(1)])
    sheets.fail_next(503, method="values.get", times=10)

    result = run_cli("--apply")

    assert result.exit_code == cli.EXIT_FAILED, result.output
    assert gmail.drafts_for(OWNER) == []


# -- the sheet's own day (TIMEZONE unset) ---------------------------------------------------------
DUE_A_WEEK_BEFORE_THE_25TH = dt.date(2026, 11, 18)  # 7 days late on the 25th, 6 on the 24th
DUE_A_WEEK_BEFORE_THE_24TH = dt.date(2026, 11, 17)


def two_invoices() -> list[Sequence[object]]:
    def row(invoice_id: str, due: dt.date) -> list[object]:
        return [
            invoice_id,
            "Ann",
            "ann@client.example.com",
            500,
            "USD",
            due,
            "Open",
            "",
            "",
            "",
            "",
        ]

    return [
        HEADER,
        row("INV-18", DUE_A_WEEK_BEFORE_THE_25TH),
        row("INV-17", DUE_A_WEEK_BEFORE_THE_24TH),
    ]


@pytest.mark.parametrize(
    ("zone", "now", "their_day", "drafted"),
    [
        # 00:30 on the 25th in Auckland is still 11:30 on the 24th in UTC.
        ("Pacific/Auckland", dt.datetime(2026, 11, 24, 11, 30, tzinfo=dt.UTC),
         dt.date(2026, 11, 25), {"INV-18", "INV-17"}),
        # 21:00 on the 24th in Los Angeles is already 05:00 on the 25th in UTC: INV-18 must
        # not be drafted a day early.
        ("America/Los_Angeles", dt.datetime(2026, 11, 25, 5, 0, tzinfo=dt.UTC),
         dt.date(2026, 11, 24), {"INV-17"}),
    ],
)  # fmt: skip
def test_without_timezone_a_run_works_on_the_sheets_own_day_for_five_calls_at_most(
    make_settings: Callable[..., Settings],
    token_file: Path,
    zone: str,
    now: dt.datetime,
    their_day: dt.date,
    drafted: set[str],
) -> None:
    with (
        running_sheets_with_append(tokens=[TOKEN]) as (sheets, sheets_url),
        running_gmail_emulator(tokens={TOKEN: OWNER}) as (gmail, gmail_url),
    ):
        sheets.add_sheet(BOOK, TAB, two_invoices(), timezone=zone)
        sheets.add_sheet(
            BOOK, "Log", [["timestamp", "invoice", "stage", "recipient"]], timezone=zone
        )
        settings = make_settings(
            GOOGLE_SHEETS_SPREADSHEET_ID=BOOK,
            GOOGLE_SHEETS_RANGE=f"'{TAB}'!A1:Z",
            SHEETS_API_ENDPOINT=sheets_url,
            GMAIL_API_ENDPOINT=gmail_url,
            DRAFTS_BACKEND="gmail",
            GMAIL_SENDER=OWNER,
            GOOGLE_TOKEN_FILE=str(token_file),
            SHEETS_LOG_TAB="Log",
            WINDOW_START="0",
            WINDOW_END="24",
            TZ="UTC",  # this machine's zone, which must not count
        )
        obj = {"settings": settings, "clock": lambda: now}
        result = CliRunner().invoke(cli.main, ["run", "--apply"], obj=obj)

        assert result.exit_code == 0, result.output
        assert f"{their_day} in {zone} (the spreadsheet's zone)" in result.stdout
        assert {str(d.key).split("/")[1] for d in gmail.drafts_for(OWNER)} == drafted
        sent_on = column(sheets.grid(BOOK, TAB), "last_sent_at")
        assert {k for k, v in sent_on.items() if v} == drafted
        assert set(sent_on.values()) - {""} == {to_serial(their_day)}
        # 1 metadata read + 2 values reads (the second just before writing back) + 1 write
        # + 1 append, whatever the row count.
        assert sheets.count("spreadsheets.get") == 1
        assert sheets.count("values.get") == 2
        assert sheets.count("values.batchUpdate") == 1
        assert sheets.count("values.append") == 1
        assert sheets.round_trips == 5
        log = sheets.grid(BOOK, "Log")
        assert sorted(r[1] for r in log[1:]) == sorted(drafted)
        assert {(str(r[0])[:10], r[3]) for r in log[1:]} == {
            (str(now.date()), "ann@client.example.com")
        }


def test_a_timer_firing_outside_the_window_in_the_sheets_zone_warns_and_reads_no_values(
    make_settings: Callable[..., Settings], token_file: Path
) -> None:
    with running_sheets_with_append(tokens=[TOKEN]) as (sheets, sheets_url):
        sheets.add_sheet(BOOK, TAB, two_invoices(), timezone="Pacific/Auckland")
        settings = make_settings(
            GOOGLE_SHEETS_SPREADSHEET_ID=BOOK,
            GOOGLE_SHEETS_RANGE=f"'{TAB}'!A1:Z",
            SHEETS_API_ENDPOINT=sheets_url,
            GOOGLE_TOKEN_FILE=str(token_file),
            WINDOW_START="8",
            WINDOW_END="18",
        )
        # The shipped timer's old 09:00 on a UTC server: 22:00 in Auckland.
        nine_utc = dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC)
        obj = {"settings": settings, "clock": lambda: nine_utc}
        result = CliRunner().invoke(cli.main, ["run", "--apply"], obj=obj)

        assert result.exit_code == cli.EXIT_OUTSIDE_WINDOW
        assert "Warning: outside the run window (08:00–18:00 Pacific/Auckland)" in result.stderr
        assert "run skipped: outside the window" in result.stderr  # the JSON log line
        assert (sheets.count("spreadsheets.get"), sheets.round_trips) == (1, 1)


def test_drafts_review_asks_gmail_which_drafts_still_wait_unsent(
    emulators: tuple[SheetsEmulator, str, GmailEmulator, str],
    run_cli: Callable[..., Result],
    make_settings: Callable[..., Settings],
) -> None:
    sheets, _, gmail, _ = emulators
    sheets.add_sheet(BOOK, TAB, [HEADER, *(invoice(n) for n in range(1, 21))])
    assert run_cli("--apply").exit_code == 0
    settings = run_cli.settings  # type: ignore[attr-defined]
    drafts = {d.key: d for d in gmail.drafts_for(OWNER)}
    sent = next(iter(drafts.values()))
    gmail.send_draft(sent.draft_id, user=OWNER)

    def review(*args: str) -> dict[str, Any]:
        obj = {"settings": settings, "clock": lambda: FIXED_NOW}
        result = CliRunner().invoke(cli.main, ["drafts", "--json", *args], obj=obj)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    today = review()
    assert today["date"] == str(TODAY)  # FIXED_NOW is 04:30 on the 24th in New York
    waiting = {f"{BOOK}/{d['invoice_id']}/{d['stage']}": d["in_drafts"] for d in today["drafts"]}
    assert waiting == {key: key != sent.key for key in drafts}
    later = review("--date", str(TODAY + dt.timedelta(days=3)))
    assert len(later["unsent"]) == len(drafts) - 1
    assert {u["days_waiting"] for u in later["unsent"]} == {3}
