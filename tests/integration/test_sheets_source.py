"""SheetsSource against the Sheets emulator, through the real google-api-python-client."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from service import cli
from service.adapters.http_retry import RetryPolicy
from service.adapters.sheets import (
    SheetRange,
    SheetsAuthorizationError,
    SheetsError,
    SheetsSource,
    hyperlink,
)
from service.bootstrap import build_services
from service.config import Settings
from service.domain.dates import parse_date
from service.ports import AuthorizationError, CreatedDraft, OutgoingDraft, RowsMoved, WriteBack
from service.usecases.run import run_sheet
from tests.emulators.sheets import Cell, SheetsEmulator, running_sheets_emulator, to_serial
from tests.fakes import FakeLedger, FakeSink

pytestmark = pytest.mark.timeout(20)

TOKEN = "sheet-token"
BOOK = "book-42"
TODAY = dt.date(2025, 1, 22)
HEADER = ["Invoice ID", "Client Name", "Amount", "Due Date", "Status", "Notes"]


@pytest.fixture
def served() -> Iterator[tuple[SheetsEmulator, str]]:
    with running_sheets_emulator(tokens=[TOKEN]) as pair:
        yield pair


@pytest.fixture
def emulator(served: tuple[SheetsEmulator, str]) -> SheetsEmulator:
    return served[0]


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_source(served: tuple[SheetsEmulator, str], sleeps: list[float]) -> Any:
    def make(range_: str = "Invoices!A1:Z", **options: Any) -> SheetsSource:
        options.setdefault("timezone", "America/New_York")
        options.setdefault("sleep", sleeps.append)
        return SheetsSource(BOOK, range_, credentials=TOKEN, endpoint=served[1], **options)

    return make


def invoice_rows(count: int) -> list[list[object]]:
    return [
        [f"INV-{n:04d}", f"Client {n}", 100 + n, dt.date(2025, 1, 1), "Open", f"note {n}"]
        for n in range(1, count + 1)
    ]


def cells_snapshot(emulator: SheetsEmulator, title: str = "Invoices") -> dict[Any, Cell]:
    sheet = emulator._spreadsheets[BOOK].sheets[title]
    return {key: Cell(c.value, c.formula, c.date_pattern) for key, c in sheet.cells.items()}


def drafted(row: int, stage: int = 21, **extra: str) -> WriteBack:
    return WriteBack(
        row=row,
        last_stage_sent=stage,
        last_sent_at=TODAY,
        reminder_status=f"Drafted stage {stage}",
        extra=extra,
    )


def test_reading_300_rows_takes_exactly_one_values_get(
    emulator: SheetsEmulator, make_source: Any
) -> None:
    emulator.add_sheet(BOOK, "Invoices", [HEADER, *invoice_rows(300)])

    snapshot = make_source().read()

    assert emulator.round_trips == 1
    assert emulator.count("values.get") == 1
    assert len(snapshot.rows) == 300
    assert snapshot.headers == tuple(HEADER)
    assert (snapshot.rows[0].row, snapshot.rows[-1].row) == (2, 301)
    assert snapshot.scope == BOOK
    assert snapshot.timezone == "America/New_York"
    call = emulator.calls[0]
    assert call.query["valueRenderOption"] == "UNFORMATTED_VALUE"
    assert call.query["dateTimeRenderOption"] == "SERIAL_NUMBER"


def test_spreadsheet_timezone_costs_one_extra_read_once(
    emulator: SheetsEmulator, make_source: Any
) -> None:
    emulator.add_sheet(BOOK, "Invoices", [HEADER, *invoice_rows(2)], timezone="Asia/Tokyo")
    source = make_source(timezone=None)

    first, second = source.read(), source.read()

    assert first.timezone == second.timezone == "Asia/Tokyo"
    assert emulator.count("spreadsheets.get") == 1
    assert emulator.count("values.get") == 2
    assert emulator.round_trips == 3


def test_timezone_lookup_can_be_switched_off(emulator: SheetsEmulator, make_source: Any) -> None:
    emulator.add_sheet(BOOK, "Invoices", [HEADER])

    snapshot = make_source(timezone=None, fetch_timezone=False).read()

    assert snapshot.timezone is None
    assert emulator.round_trips == 1


def test_blank_rows_are_skipped_but_rows_keep_their_sheet_numbers(
    emulator: SheetsEmulator, make_source: Any
) -> None:
    emulator.add_sheet(
        BOOK,
        "Invoices",
        [HEADER, ["INV-1", "Acme", 10], [], ["", "", ""], ["INV-2", "Globex", 20, "", "", "", "x"]],
    )

    snapshot = make_source().read()

    assert [row.row for row in snapshot.rows] == [2, 5]
    # Ragged rows are padded; cells without a header are not invented as fields.
    assert snapshot.rows[0].values == {
        "Invoice ID": "INV-1",
        "Client Name": "Acme",
        "Amount": 10,
        "Due Date": "",
        "Status": "",
        "Notes": "",
    }


def test_date_cells_arrive_as_serial_numbers(emulator: SheetsEmulator, make_source: Any) -> None:
    emulator.add_sheet(BOOK, "Invoices", [HEADER, ["INV-1", "Acme", 10, dt.date(2025, 1, 15)]])

    due = make_source().read().rows[0].values["Due Date"]

    assert due == 45672
    assert parse_date(due) == dt.date(2025, 1, 15)


def test_header_row_below_the_top_numbers_rows_from_the_sheet(
    emulator: SheetsEmulator, make_source: Any
) -> None:
    emulator.add_sheet(
        BOOK,
        "Invoices",
        [["Report"], [], ["", *HEADER, "last_stage_sent"], ["", "INV-1", "Acme", 10]],
    )
    source = make_source("Invoices!B3:Z")

    snapshot = source.read()
    source.write_back(snapshot, [drafted(4, stage=7)])

    assert snapshot.rows[0].row == 4
    assert emulator.grid(BOOK, "Invoices")[2][7:] == [
        "last_stage_sent",
        "last_sent_at",
        "reminder_status",
    ]
    assert emulator.grid(BOOK, "Invoices")[3][7:] == [7, to_serial(TODAY), "Drafted stage 7"]


def test_write_back_is_one_batch_update_touching_only_output_cells_of_changed_rows(
    emulator: SheetsEmulator, make_source: Any
) -> None:
    header = [*HEADER, "Last Stage Sent", "Last Sent At", "Reminder Status"]
    rows = [[*row, 14, dt.date(2025, 1, 15), "Drafted stage 14"] for row in invoice_rows(300)]
    emulator.add_sheet(BOOK, "Invoices", [header, *rows])
    source = make_source()
    snapshot = source.read()
    before = cells_snapshot(emulator)
    # Every row gets an update; only every third one actually changes.
    updates = [
        drafted(n + 1, stage=21)
        if n % 3 == 0
        else WriteBack(n + 1, 14, dt.date(2025, 1, 15), "Drafted stage 14")
        for n in range(1, 301)
    ]

    written = source.write_back(snapshot, updates)

    assert written == 100
    assert emulator.count("values.batchUpdate") == 1
    assert emulator.round_trips == 3  # the read, the re-read that finds each row now, the write
    after = cells_snapshot(emulator)
    changed = {key for key in after if after[key] != before.get(key)}
    assert changed == {(n, col) for n in range(1, 301) if n % 3 == 0 for col in (6, 7, 8)}
    assert after.keys() == before.keys()
    last_sent = after[(3, 7)]
    assert last_sent.value == to_serial(TODAY)
    assert last_sent.date_pattern is not None  # a real date cell, not text or a bare number


def test_second_write_back_with_identical_values_makes_no_request(
    emulator: SheetsEmulator, make_source: Any
) -> None:
    emulator.add_sheet(BOOK, "Invoices", [HEADER, *invoice_rows(5)])
    source = make_source()
    updates = [drafted(row) for row in (2, 4)]
    first = source.read()
    source.write_back(first, updates)
    emulator.reset_calls()

    same_snapshot = source.write_back(first, updates)
    fresh_snapshot = source.write_back(source.read(), updates)

    assert same_snapshot == fresh_snapshot == 0
    assert emulator.writes == 0


def test_missing_output_columns_are_appended_in_the_same_request(
    emulator: SheetsEmulator, make_source: Any
) -> None:
    emulator.add_sheet(BOOK, "Invoices", [HEADER, *invoice_rows(3)])
    source = make_source()

    source.write_back(source.read(), [drafted(3, payment_link="https://pay.test/inv-2")])

    grid = emulator.grid(BOOK, "Invoices")
    assert grid[0] == [
        *HEADER,
        "last_stage_sent",
        "last_sent_at",
        "reminder_status",
        "payment_link",
    ]
    assert grid[2][6:] == [21, to_serial(TODAY), "Drafted stage 21", "https://pay.test/inv-2"]
    assert len(grid[1]) == len(grid[3]) == len(HEADER)
    assert emulator.writes == 1
    reread = source.read()
    assert reread.rows[1].values["payment_link"] == "https://pay.test/inv-2"


def test_a_tab_sized_to_its_data_is_widened_for_the_output_columns(
    emulator: SheetsEmulator, make_source: Any
) -> None:
    # An imported file makes a tab exactly as wide as its data; Google refuses writes past it.
    emulator.add_sheet(BOOK, "Invoices", [HEADER, *invoice_rows(2)], columns=len(HEADER))
    source = make_source()

    assert source.write_back(source.read(), [drafted(3)]) == 1

    assert emulator.grid(BOOK, "Invoices")[2][6:] == [21, to_serial(TODAY), "Drafted stage 21"]
    assert emulator._spreadsheets[BOOK].sheets["Invoices"].column_count == len(HEADER) + 3
    # The refused write, the tab's size, the widening, the write again: once, on the first run.
    assert [(c.method, c.status) for c in emulator.calls[2:]] == [
        ("values.batchUpdate", 400),
        ("spreadsheets.get", 200),
        ("spreadsheets.batchUpdate", 200),
        ("values.batchUpdate", 200),
    ]
    emulator.reset_calls()
    assert source.write_back(source.read(), [drafted(2)]) == 1
    assert [c.method for c in emulator.calls] == ["values.get", "values.get", "values.batchUpdate"]


def test_columns_are_appended_after_cells_under_a_blank_header(
    emulator: SheetsEmulator, make_source: Any
) -> None:
    emulator.add_sheet(BOOK, "Invoices", [HEADER, ["INV-1", "A", 1, "", "", "", "", "keep me"]])
    source = make_source()

    source.write_back(source.read(), [drafted(2)])

    row = emulator.grid(BOOK, "Invoices")[1]
    assert row[7] == "keep me"
    assert row[8:] == [21, to_serial(TODAY), "Drafted stage 21"]


def test_headers_match_regardless_of_case_spaces_and_separators(
    emulator: SheetsEmulator, make_source: Any
) -> None:
    header = [*HEADER, "LAST-STAGE-SENT", "last sent at", "Reminder_Status"]
    emulator.add_sheet(BOOK, "Invoices", [header, *invoice_rows(1)])
    source = make_source()

    source.write_back(source.read(), [drafted(2)])

    grid = emulator.grid(BOOK, "Invoices")
    assert grid[0] == header
    assert grid[1][6:] == [21, to_serial(TODAY), "Drafted stage 21"]


def test_untouched_cells_stay_byte_identical(emulator: SheetsEmulator, make_source: Any) -> None:
    emulator.add_sheet(
        BOOK,
        "Invoices",
        [
            [*HEADER, "Formula", "Flag", "Code"],
            [
                "INV-1",
                "Acme",
                10.25,
                dt.date(2025, 1, 1),
                "Open",
                "",
                '=HYPERLINK("https://a","A")',
                True,
                "007",
            ],
            [
                "INV-2",
                "Globex",
                20,
                dt.datetime(2025, 1, 2, 13, 30),
                "Open",
                "n",
                "=SUM(1,2)",
                False,
                "0x1",
            ],
        ],
    )
    source = make_source()
    before = cells_snapshot(emulator)

    source.write_back(source.read(), [drafted(2), drafted(3)])

    after = cells_snapshot(emulator)
    assert {key: after[key] for key in before} == before


def test_sheet_names_with_spaces_and_apostrophes_are_quoted(
    emulator: SheetsEmulator, make_source: Any
) -> None:
    emulator.add_sheet(BOOK, "Bob's Invoices", [HEADER, *invoice_rows(2)])
    source = make_source("Bob's Invoices!A1:Z")  # as a person types it in GOOGLE_SHEETS_RANGE

    snapshot = source.read()
    source.write_back(snapshot, [drafted(3)])

    assert len(snapshot.rows) == 2
    assert emulator.calls[0].range == emulator.calls[1].range == "'Bob''s Invoices'!A1:Z"
    ranges = [item["range"] for item in emulator.calls[2].body["data"]]
    assert ranges == ["'Bob''s Invoices'!G1:I1", "'Bob''s Invoices'!G3:I3"]
    assert emulator.grid(BOOK, "Bob's Invoices")[2][6:] == [
        21,
        to_serial(TODAY),
        "Drafted stage 21",
    ]


def test_rate_limited_read_is_retried_after_a_jittered_pause(
    emulator: SheetsEmulator, make_source: Any, sleeps: list[float]
) -> None:
    emulator.add_sheet(BOOK, "Invoices", [HEADER, *invoice_rows(3)])
    emulator.fail_next(429, method="values.get")

    snapshot = make_source(retry=RetryPolicy(max_attempts=3, base_delay_s=0.5)).read()

    assert len(snapshot.rows) == 3
    assert emulator.count("values.get", status=429) == 1
    assert emulator.count("values.get", status=200) == 1
    assert len(sleeps) == 1
    assert 0 <= sleeps[0] <= 0.5


def test_server_errors_on_write_back_are_retried_and_written_once(
    emulator: SheetsEmulator, make_source: Any, sleeps: list[float]
) -> None:
    emulator.add_sheet(BOOK, "Invoices", [HEADER, *invoice_rows(3)])
    source = make_source()
    snapshot = source.read()
    emulator.fail_next(503, method="values.batchUpdate", times=2)

    assert source.write_back(snapshot, [drafted(2)]) == 1
    assert emulator.writes == 1
    assert len(sleeps) == 2


def test_retry_after_is_honoured_within_the_bound(
    emulator: SheetsEmulator, make_source: Any, sleeps: list[float]
) -> None:
    emulator.add_sheet(BOOK, "Invoices", [HEADER])
    emulator.fail_next(429, retry_after=3)

    make_source(retry=RetryPolicy(max_attempts=2, max_delay_s=2)).read()

    assert sleeps == [3]  # longer than any backoff: Google's Retry-After is a floor


def test_retry_after_past_the_time_budget_gives_up_at_once(
    emulator: SheetsEmulator, make_source: Any, sleeps: list[float]
) -> None:
    emulator.add_sheet(BOOK, "Invoices", [HEADER])
    emulator.fail_next(429, retry_after=30)

    with pytest.raises(SheetsError) as caught:
        make_source(retry=RetryPolicy(max_attempts=5, max_total_s=10)).read()

    assert caught.value.retryable and caught.value.status == 429
    assert sleeps == []
    assert emulator.round_trips == 1


def test_persistent_rate_limiting_gives_up_after_bounded_attempts(
    emulator: SheetsEmulator, make_source: Any, sleeps: list[float]
) -> None:
    emulator.add_sheet(BOOK, "Invoices", [HEADER])
    emulator.fail_next(429, times=10)

    with pytest.raises(SheetsError) as caught:
        make_source(retry=RetryPolicy(max_attempts=3)).read()

    assert caught.value.retryable
    assert caught.value.status == 429
    assert emulator.round_trips == 3
    assert len(sleeps) == 2


def test_unknown_sheet_is_a_clear_non_retryable_error(
    emulator: SheetsEmulator, make_source: Any
) -> None:
    emulator.add_sheet(BOOK, "Invoices", [HEADER])

    with pytest.raises(SheetsError) as caught:
        make_source("Invoicez!A1:Z").read()

    assert not caught.value.retryable
    assert "Unable to parse range" in str(caught.value)
    assert emulator.count("values.get") == 1


def test_a_renamed_tab_names_the_setting_to_fix_and_the_tabs_there_are(
    emulator: SheetsEmulator, make_source: Any
) -> None:
    emulator.add_sheet(BOOK, "Invoices 2025", [HEADER, *invoice_rows(1)])
    emulator.add_sheet(BOOK, "Log", [["when"]])

    with pytest.raises(SheetsError) as caught:
        make_source("Invoices!A1:Z").read()

    message = str(caught.value)
    assert "Unable to parse range: 'Invoices'!A1:Z" in message  # Google's own words, kept
    assert "GOOGLE_SHEETS_RANGE" in message
    assert "'Invoices 2025', 'Log'" in message
    assert (caught.value.retryable, caught.value.status) == (False, 400)
    assert emulator.count("values.get") == 1  # a 400 is not tried again


def test_a_range_past_the_tabs_edge_names_the_setting_to_fix(
    emulator: SheetsEmulator, make_source: Any
) -> None:
    emulator.add_sheet(BOOK, "Invoices", [HEADER, *invoice_rows(1)])

    with pytest.raises(SheetsError) as caught:
        make_source("Invoices!A1001:Z").read()

    assert "exceeds grid limits" in str(caught.value)
    assert "GOOGLE_SHEETS_RANGE" in str(caught.value)
    assert not caught.value.retryable


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("Invoices!A", "is not an A1 range"),
        # Google reads unquoted Q1 as one cell of the first tab, never the tab called Q1.
        ("Q1", "quote it"),
    ],
)
def test_a_range_setting_that_cannot_work_stops_the_command_with_a_config_exit(
    text: str, said: str
) -> None:
    with pytest.raises(cli.CliExit) as caught, cli._stopped_as_exit("run"):
        SheetRange.parse(text)

    assert caught.value.exit_code == cli.EXIT_CONFIG
    assert "GOOGLE_SHEETS_RANGE" in caught.value.message
    assert said in caught.value.message


def test_a_renamed_tab_stops_a_run_with_a_config_exit_naming_the_setting(
    emulator: SheetsEmulator, make_source: Any
) -> None:
    emulator.add_sheet(BOOK, "Invoices 2025", [HEADER, *invoice_rows(1)])

    with pytest.raises(cli.CliExit) as caught, cli._stopped_as_exit("run"):
        make_source("Invoices!A1:Z").read()

    assert caught.value.exit_code == cli.EXIT_CONFIG
    assert "GOOGLE_SHEETS_RANGE" in caught.value.message
    assert "'Invoices 2025'" in caught.value.message


def test_rejected_token_is_an_authorization_error(
    emulator: SheetsEmulator, make_source: Any
) -> None:
    emulator.add_sheet(BOOK, "Invoices", [HEADER])
    emulator.tokens.clear()

    with pytest.raises(SheetsAuthorizationError) as caught:
        make_source().read()

    assert isinstance(caught.value, AuthorizationError)
    assert caught.value.code == "reauthorize"


def test_status_with_a_link_is_written_as_a_hyperlink_formula(
    emulator: SheetsEmulator, make_source: Any
) -> None:
    emulator.add_sheet(BOOK, "Invoices", [HEADER, *invoice_rows(1)])
    source = make_source()
    status = hyperlink('https://mail.google.com/mail/#drafts?compose=r"1', "Drafted stage 7")

    source.write_back(source.read(), [WriteBack(2, 7, TODAY, status)])
    again = source.write_back(source.read(), [WriteBack(2, 7, TODAY, status)])

    cell = emulator.cell(BOOK, "Invoices!I2")
    assert cell is not None
    assert cell.value == "Drafted stage 7"
    assert cell.formula == status
    assert again == 0


def test_formula_looking_text_is_written_as_plain_text(
    emulator: SheetsEmulator, make_source: Any
) -> None:
    emulator.add_sheet(BOOK, "Invoices", [HEADER, *invoice_rows(1)])
    source = make_source()
    hostile = '=IMPORTXML("https://evil.test","//a")'

    source.write_back(source.read(), [WriteBack(2, None, None, hostile, {"ref": "2025-01-01"})])

    status, ref = emulator.cell(BOOK, "Invoices!G2"), emulator.cell(BOOK, "Invoices!H2")
    assert status == Cell(hostile)
    assert ref == Cell("2025-01-01")  # text stays text, not a date


def test_missing_stage_and_date_leave_those_cells_alone(
    emulator: SheetsEmulator, make_source: Any
) -> None:
    header = [*HEADER, "last_stage_sent", "last_sent_at", "reminder_status"]
    emulator.add_sheet(
        BOOK, "Invoices", [header, [*invoice_rows(1)[0], 14, dt.date(2025, 1, 8), "ok"]]
    )
    source = make_source()

    source.write_back(source.read(), [WriteBack(2, None, None, "error: bad amount")])

    assert emulator.grid(BOOK, "Invoices")[1][6:] == [14, 45665, "error: bad amount"]


def test_no_room_for_output_columns_inside_the_range_is_refused(
    emulator: SheetsEmulator, make_source: Any
) -> None:
    emulator.add_sheet(BOOK, "Invoices", [HEADER, *invoice_rows(1)])
    source = make_source("Invoices!A1:F")

    with pytest.raises(SheetsError) as caught:
        source.write_back(source.read(), [drafted(2)])

    assert caught.value.code == "range_too_narrow"
    assert emulator.writes == 0


def test_update_for_a_row_outside_the_snapshot_is_refused(
    emulator: SheetsEmulator, make_source: Any
) -> None:
    emulator.add_sheet(BOOK, "Invoices", [HEADER, *invoice_rows(1)])
    source = make_source()

    with pytest.raises(ValueError, match="row 1"):
        source.write_back(source.read(), [drafted(1)])

    assert emulator.writes == 0


def test_a_sheet_sorted_while_the_run_drafted_gets_each_result_on_its_invoice(
    emulator: SheetsEmulator, make_source: Any
) -> None:
    rows = invoice_rows(5)
    emulator.add_sheet(BOOK, "Invoices", [HEADER, *rows])
    source = make_source()
    snapshot = source.read()
    # The bookkeeper sorts by amount, largest first, while the drafts are being made.
    emulator.add_sheet(BOOK, "Invoices", [HEADER, *reversed(rows)])

    written = source.write_back(snapshot, [drafted(2, stage=7), drafted(5, stage=21)])

    assert written == 2
    by_id = {row[0]: row for row in emulator.grid(BOOK, "Invoices")[1:]}
    assert by_id["INV-0001"][6:] == [7, to_serial(TODAY), "Drafted stage 7"]
    assert by_id["INV-0004"][6:] == [21, to_serial(TODAY), "Drafted stage 21"]
    assert all(len(by_id[f"INV-000{n}"]) == len(HEADER) for n in (2, 3, 5))


def test_a_row_deleted_while_the_run_drafted_is_named_and_the_others_written(
    emulator: SheetsEmulator, make_source: Any
) -> None:
    rows = invoice_rows(4)
    emulator.add_sheet(BOOK, "Invoices", [HEADER, *rows])
    source = make_source()
    snapshot = source.read()
    # INV-0002 is deleted and INV-0003 pasted twice: neither has one row to write to any more.
    emulator.add_sheet(BOOK, "Invoices", [HEADER, rows[0], rows[2], rows[2], rows[3]])

    with pytest.raises(RowsMoved, match=r"2 rows moved .*\(INV-0002, INV-0003\)") as moved:
        source.write_back(snapshot, [drafted(n) for n in (2, 3, 4, 5)])

    assert moved.value.written == 2
    grid = emulator.grid(BOOK, "Invoices")
    assert [row[0] for row in grid[1:] if len(row) > len(HEADER)] == ["INV-0001", "INV-0004"]
    assert grid[4][6:] == [21, to_serial(TODAY), "Drafted stage 21"]


def test_output_columns_named_by_column_map_are_written_in_place(
    emulator: SheetsEmulator, make_source: Any
) -> None:
    own = ["Stage Sent", "Chased On", "Chaser Note"]
    emulator.add_sheet(BOOK, "Invoices", [[*HEADER, *own], *invoice_rows(2)])
    column_map = dict(zip(("last_stage_sent", "last_sent_at", "reminder_status"), own, strict=True))
    source = make_source(column_map=column_map)

    source.write_back(source.read(), [drafted(3)])

    grid = emulator.grid(BOOK, "Invoices")
    assert grid[0] == [*HEADER, *own]  # no column of ours added beside the sheet's own
    assert grid[2][6:] == [21, to_serial(TODAY), "Drafted stage 21"]
    emulator.reset_calls()
    assert source.write_back(source.read(), [drafted(3)]) == 0  # read back as already written
    assert emulator.writes == 0


def test_a_run_whose_sheet_is_sorted_mid_run_writes_each_result_next_to_its_invoice(
    emulator: SheetsEmulator, make_source: Any, settings: Settings
) -> None:
    header = ["invoice_id", "client_name", "client_email", "amount", "due_date", "status"]
    rows = [
        [f"INV-{n}", f"Client {n}", f"ap{n}@client.example.com", 100 * n, due, "Open"]
        for n, due in enumerate(["2025-01-15", "2025-01-01", "2025-01-20", "2024-12-25"], 1)
    ]
    emulator.add_sheet(BOOK, "Invoices", [header, *rows])
    services = build_services(settings)

    class SortingSink(FakeSink):
        """Drafts like Gmail; at the first draft, the bookkeeper sorts by amount, largest first."""

        def create(self, draft: OutgoingDraft) -> CreatedDraft:
            if not self.drafts:
                emulator.add_sheet(BOOK, "Invoices", [header, *reversed(rows)])
            return super().create(draft)

    report = run_sheet(
        make_source(),
        ledger=FakeLedger(),
        sink=SortingSink,
        templates=services.templates,
        settings=services.run_settings,
        clock=lambda: dt.datetime(2025, 1, 22, 15, tzinfo=dt.UTC),
        today=TODAY,
        dry_run=False,
    )

    assert (report.drafted, report.written, report.write_error) == (3, 3, None)
    stages = {row[0]: row[6:7] for row in emulator.grid(BOOK, "Invoices")[1:]}
    assert stages == {"INV-1": [7], "INV-2": [21], "INV-3": [], "INV-4": [28]}


@pytest.mark.parametrize(
    ("text", "a1", "first_row", "first_col", "last_col"),
    [
        ("Invoices!A1:Z", "'Invoices'!A1:Z", 1, 0, 25),
        ("'My Invoices'!B3:Z", "'My Invoices'!B3:Z", 3, 1, 25),
        ("'Bob''s'!A:M", "'Bob''s'!A1:M", 1, 0, 12),
        ("My Invoices!A1:Z", "'My Invoices'!A1:Z", 1, 0, 25),
        ("Invoices", "'Invoices'", 1, 0, None),
        ("Sheet1", "'Sheet1'", 1, 0, None),
        ("A1:Z", "A1:Z", 1, 0, 25),
    ],
)
def test_configured_ranges_are_parsed_and_requoted(
    text: str, a1: str, first_row: int, first_col: int, last_col: int | None
) -> None:
    parsed = SheetRange.parse(text)

    assert parsed.a1() == a1
    assert (parsed.first_row, parsed.first_col, parsed.last_col) == (first_row, first_col, last_col)


@pytest.mark.parametrize("text", ["", "Invoices!B3:", "'Unclosed!A1", "Invoices!A"])
def test_malformed_configured_ranges_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match=r"range|sheet"):
        SheetRange.parse(text)


def test_extra_fields_never_rewrite_invoice_columns(
    emulator: SheetsEmulator, make_source: Any
) -> None:
    emulator.add_sheet(BOOK, "Invoices", [HEADER, *invoice_rows(1)])
    source = make_source()

    with pytest.raises(ValueError, match="input column"):
        source.write_back(source.read(), [drafted(2, Status="Paid")])

    assert emulator.writes == 0
