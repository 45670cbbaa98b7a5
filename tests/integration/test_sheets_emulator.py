"""The Sheets emulator, driven through the real google-api-python-client."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.auth.exceptions import RefreshError
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from tests.emulators.sheets import SheetsEmulator, running_sheets_emulator

pytestmark = pytest.mark.timeout(20)

TOKEN = "test-token"
BOOK = "book-1"
HEADER = ["Invoice ID", "Client Name", "Amount", "Due Date", "Status"]


class FakeClock:
    """A monotonic clock the test moves by hand, so quota windows need no sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def served(clock: FakeClock) -> Iterator[tuple[SheetsEmulator, str]]:
    with running_sheets_emulator(tokens=[TOKEN], read_quota=5, write_quota=3, clock=clock) as pair:
        emulator, _ = pair
        emulator.add_sheet(
            BOOK,
            "Invoices",
            [
                HEADER,
                ["INV-1", "Acme", 1234.5, dt.date(2025, 1, 15), "Open"],
                ["INV-2", "Globex", 300, dt.date(2025, 1, 1)],
                [],
                ["INV-3", "Initech", 99, dt.date(2024, 12, 24), "", "", "aside"],
            ],
            timezone="Europe/Berlin",
        )
        yield pair


@pytest.fixture
def emulator(served: tuple[SheetsEmulator, str]) -> SheetsEmulator:
    return served[0]


def sheets(base_url: str, token: str = TOKEN) -> Any:
    return build(
        "sheets",
        "v4",
        credentials=Credentials(token=token),
        static_discovery=True,
        cache_discovery=False,
        client_options={"api_endpoint": base_url},
    )


@pytest.fixture
def api(served: tuple[SheetsEmulator, str]) -> Any:
    return sheets(served[1])


def get_values(api: Any, range_: str, **options: str) -> dict[str, Any]:
    result: dict[str, Any] = (
        api.spreadsheets().values().get(spreadsheetId=BOOK, range=range_, **options).execute()
    )
    return result


def batch_update(api: Any, option: str, data: list[dict[str, Any]]) -> dict[str, Any]:
    body = {"valueInputOption": option, "data": data}
    result: dict[str, Any] = (
        api.spreadsheets().values().batchUpdate(spreadsheetId=BOOK, body=body).execute()
    )
    return result


def raw_request(base_url: str, path: str, token: str | None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(base_url.rstrip("/") + path)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


UNFORMATTED = {"valueRenderOption": "UNFORMATTED_VALUE", "dateTimeRenderOption": "SERIAL_NUMBER"}


def test_rows_come_back_ragged_without_trailing_empty_cells_or_rows(api: Any) -> None:
    result = get_values(api, "Invoices!A1:Z", **UNFORMATTED)

    assert result["range"] == "Invoices!A1:Z1000"
    assert result["majorDimension"] == "ROWS"
    assert result["values"] == [
        HEADER,
        ["INV-1", "Acme", 1234.5, 45672, "Open"],
        ["INV-2", "Globex", 300, 45658],
        [],
        ["INV-3", "Initech", 99, 45650, "", "", "aside"],
    ]


def test_numbers_stay_json_numbers_and_whole_numbers_are_ints(api: Any) -> None:
    row = get_values(api, "Invoices!A2:E3", **UNFORMATTED)["values"]

    assert isinstance(row[0][2], float)
    assert isinstance(row[1][2], int)


def test_date_cells_render_as_serials_strings_or_formatted_values(api: Any) -> None:
    serial = get_values(api, "Invoices!D2", **UNFORMATTED)["values"]
    as_string = get_values(
        api,
        "Invoices!D2",
        valueRenderOption="UNFORMATTED_VALUE",
        dateTimeRenderOption="FORMATTED_STRING",
    )["values"]
    formatted = get_values(api, "Invoices!C2:D2")["values"]  # FORMATTED_VALUE is the default

    assert serial == [[45672]]  # 2025-01-15 counted from 1899-12-30
    assert as_string == [["1/15/2025"]]
    assert formatted == [["1234.5", "1/15/2025"]]


def test_columns_major_dimension_transposes_and_trims(api: Any) -> None:
    result = get_values(api, "Invoices!A1:B", majorDimension="COLUMNS")

    assert result["values"] == [
        ["Invoice ID", "INV-1", "INV-2", "", "INV-3"],
        ["Client Name", "Acme", "Globex", "", "Initech"],
    ]


@pytest.mark.parametrize(
    ("title", "range_", "expected_range"),
    [
        ("My Invoices", "'My Invoices'!A1:Z", "'My Invoices'!A1:Z1000"),
        ("Bob's", "'Bob''s'!B2", "'Bob''s'!B2"),
        ("Invoices", "Invoices", "Invoices!A1:Z1000"),
        ("Invoices", "Invoices!A:C", "Invoices!A1:C1000"),
        ("Invoices", "'Invoices'!A2:B", "Invoices!A2:B1000"),
    ],
)
def test_a1_ranges_with_quotes_open_ends_and_whole_sheets_resolve(
    emulator: SheetsEmulator, api: Any, title: str, range_: str, expected_range: str
) -> None:
    if title != "Invoices":
        emulator.add_sheet(BOOK, title, [["a", "b"], ["c", "d"]])

    result = get_values(api, range_)

    assert result["range"] == expected_range
    assert result["values"]


def test_unknown_sheet_is_a_400_unable_to_parse_range(api: Any) -> None:
    with pytest.raises(HttpError) as caught:
        get_values(api, "Missing!A1:Z")

    assert caught.value.resp.status == 400
    error = json.loads(caught.value.content)["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["message"] == "Unable to parse range: Missing!A1:Z"


def test_an_unquoted_tab_name_that_reads_as_a_cell_is_that_cell_of_the_first_tab(
    emulator: SheetsEmulator, api: Any
) -> None:
    # Google reads unquoted "Q1" as the cell Q1 of the first tab even when a tab is called Q1
    # (gspread #636, #717, #747; gspread-dataframe #54); quoted, it is the tab.
    emulator.add_sheet(BOOK, "Q1", [["on tab Q1"], ["row 2"]])
    emulator.set_cell(BOOK, "Invoices!Q1", "cell Q1 of Invoices")

    unquoted = get_values(api, "Q1")
    quoted = get_values(api, "'Q1'")

    assert (unquoted["range"], unquoted["values"]) == ("Invoices!Q1", [["cell Q1 of Invoices"]])
    assert quoted["values"] == [["on tab Q1"], ["row 2"]]


def test_unquoted_sheet_name_with_a_space_is_rejected(emulator: SheetsEmulator, api: Any) -> None:
    emulator.add_sheet(BOOK, "My Invoices", [["x"]])

    with pytest.raises(HttpError) as caught:
        get_values(api, "My Invoices!A1")

    assert caught.value.resp.status == 400


def test_missing_token_is_a_google_shaped_401(served: tuple[SheetsEmulator, str]) -> None:
    status, body = raw_request(served[1], f"/v4/spreadsheets/{BOOK}", token=None)

    assert status == 401
    assert body["error"]["status"] == "UNAUTHENTICATED"
    assert body["error"]["details"][0]["reason"] == "CREDENTIALS_MISSING"


def test_wrong_token_surfaces_as_refresh_error_in_the_client(
    served: tuple[SheetsEmulator, str],
) -> None:
    # A bare-token Credentials cannot refresh, so google-auth turns the 401 into RefreshError.
    with pytest.raises(RefreshError):
        sheets(served[1], token="stolen").spreadsheets().get(spreadsheetId=BOOK).execute()

    status, body = raw_request(served[1], f"/v4/spreadsheets/{BOOK}", token="stolen")
    assert status == 401
    assert body["error"]["code"] == 401


def test_reads_over_the_per_minute_quota_get_429_until_the_window_passes(
    emulator: SheetsEmulator, api: Any, clock: FakeClock
) -> None:
    for _ in range(5):
        get_values(api, "Invoices!A1")

    with pytest.raises(HttpError) as caught:
        get_values(api, "Invoices!A1")

    assert caught.value.resp.status == 429
    error = json.loads(caught.value.content)["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED"
    assert error["errors"][0]["reason"] == "rateLimitExceeded"
    assert "Read requests per minute per user" in error["message"]
    clock.now += 60
    assert get_values(api, "Invoices!A1")["values"] == [["Invoice ID"]]
    assert emulator.count("values.get", status=429) == 1


def test_writes_have_their_own_quota(api: Any) -> None:
    for _ in range(3):
        batch_update(api, "RAW", [{"range": "Invoices!F2", "values": [["x"]]}])

    with pytest.raises(HttpError) as caught:
        batch_update(api, "RAW", [{"range": "Invoices!F2", "values": [["x"]]}])

    assert caught.value.resp.status == 429
    assert "Write requests" in json.loads(caught.value.content)["error"]["message"]
    assert get_values(api, "Invoices!F2")["values"] == [["x"]]  # reads are unaffected


def test_batch_update_answers_with_googles_totals(api: Any) -> None:
    result = batch_update(
        api,
        "USER_ENTERED",
        [
            {"range": "Invoices!F1:G1", "values": [["last_sent_at", "reminder_status"]]},
            {"range": "Invoices!F2", "values": [["2025-01-22"]]},
        ],
    )

    assert result["spreadsheetId"] == BOOK
    assert result["totalUpdatedCells"] == 3
    assert result["totalUpdatedRows"] == 2
    assert result["totalUpdatedColumns"] == 2
    assert result["totalUpdatedSheets"] == 1
    assert [r["updatedRange"] for r in result["responses"]] == ["Invoices!F1:G1", "Invoices!F2"]
    assert [r["updatedCells"] for r in result["responses"]] == [2, 1]


def test_user_entered_parses_dates_formulas_and_apostrophe_text(
    emulator: SheetsEmulator, api: Any
) -> None:
    batch_update(
        api,
        "USER_ENTERED",
        [
            {
                "range": "Invoices!F2:J2",
                "values": [
                    ["2025-01-22", '=HYPERLINK("https://x.test/d","Draft")', "'=1+1", "42", 7]
                ],
            }
        ],
    )

    row = get_values(api, "Invoices!F2:J2", **UNFORMATTED)["values"][0]
    assert row == [45679, "Draft", "=1+1", 42, 7]
    date_cell, link_cell = emulator.cell(BOOK, "Invoices!F2"), emulator.cell(BOOK, "Invoices!G2")
    assert date_cell is not None and date_cell.date_pattern
    assert link_cell is not None and link_cell.formula == '=HYPERLINK("https://x.test/d","Draft")'
    formulas = get_values(api, "Invoices!G2", valueRenderOption="FORMULA")["values"]
    assert formulas == [['=HYPERLINK("https://x.test/d","Draft")']]


def test_raw_input_keeps_text_as_text(emulator: SheetsEmulator, api: Any) -> None:
    batch_update(api, "RAW", [{"range": "Invoices!F2:G2", "values": [["2025-01-22", "=1+1"]]}])

    assert get_values(api, "Invoices!F2:G2", **UNFORMATTED)["values"] == [["2025-01-22", "=1+1"]]
    cell = emulator.cell(BOOK, "Invoices!G2")
    assert cell is not None and cell.formula is None


def test_null_values_leave_cells_alone_and_empty_strings_clear_them(api: Any) -> None:
    batch_update(api, "RAW", [{"range": "Invoices!A2:C2", "values": [[None, "", "changed"]]}])

    assert get_values(api, "Invoices!A2:C2")["values"] == [["INV-1", "", "changed"]]


def test_a_batch_with_one_bad_range_changes_nothing(emulator: SheetsEmulator, api: Any) -> None:
    before = emulator.grid(BOOK, "Invoices")

    with pytest.raises(HttpError) as caught:
        batch_update(
            api,
            "RAW",
            [
                {"range": "Invoices!F2", "values": [["x"]]},
                {"range": "Nope!A1", "values": [["y"]]},
            ],
        )

    assert caught.value.resp.status == 400
    assert "Invalid data[1]: Unable to parse range: Nope!A1" in str(caught.value)
    assert emulator.grid(BOOK, "Invoices") == before


def test_writing_past_the_end_of_a_bounded_range_is_rejected(api: Any) -> None:
    with pytest.raises(HttpError) as caught:
        batch_update(api, "RAW", [{"range": "Invoices!F2:F2", "values": [["a", "b"]]}])

    assert caught.value.resp.status == 400


def test_a_write_past_the_grid_is_refused_until_the_tab_is_widened(
    emulator: SheetsEmulator, api: Any
) -> None:
    emulator.add_sheet(BOOK, "Imported", [HEADER], columns=len(HEADER))  # sized to its data
    before = emulator.grid(BOOK, "Imported")
    beyond = [{"range": "Imported!E1:F1", "values": [["Status", "Note"]]}]

    with pytest.raises(HttpError) as caught:
        batch_update(api, "RAW", beyond)

    assert caught.value.resp.status == 400
    assert "Invalid data[0]: Range (Imported!E1:F1) exceeds grid limits." in str(caught.value)
    assert "Max rows: 1000, max columns: 5" in str(caught.value)
    assert emulator.grid(BOOK, "Imported") == before
    tab = emulator._spreadsheets[BOOK].sheets["Imported"]
    widen = {"appendDimension": {"sheetId": tab.sheet_id, "dimension": "COLUMNS", "length": 1}}
    reply = api.spreadsheets().batchUpdate(spreadsheetId=BOOK, body={"requests": [widen]})
    assert reply.execute() == {"spreadsheetId": BOOK, "replies": [{}]}
    batch_update(api, "RAW", beyond)
    assert emulator.grid(BOOK, "Imported")[0][4:] == ["Status", "Note"]
    assert emulator.count("spreadsheets.batchUpdate") == emulator.writes == 1


def test_injected_server_error_fails_once_then_recovers(emulator: SheetsEmulator, api: Any) -> None:
    emulator.fail_next(503, method="values.get")

    with pytest.raises(HttpError) as caught:
        get_values(api, "Invoices!A1")

    assert caught.value.resp.status == 503
    assert get_values(api, "Invoices!A1")["values"] == [["Invoice ID"]]
    assert (emulator.round_trips, emulator.reads) == (2, 1)


def test_spreadsheet_get_reports_timezone_and_honours_the_field_mask(api: Any) -> None:
    slim = api.spreadsheets().get(spreadsheetId=BOOK, fields="properties.timeZone").execute()
    full = api.spreadsheets().get(spreadsheetId=BOOK).execute()

    assert slim == {"properties": {"timeZone": "Europe/Berlin"}}
    assert [sheet["properties"]["title"] for sheet in full["sheets"]] == ["Invoices"]
    assert full["properties"]["timeZone"] == "Europe/Berlin"


def test_unknown_spreadsheet_is_404(served: tuple[SheetsEmulator, str]) -> None:
    status, body = raw_request(served[1], "/v4/spreadsheets/nope", token=TOKEN)

    assert status == 404
    assert body["error"]["status"] == "NOT_FOUND"


def test_counters_tell_reads_writes_and_round_trips_apart(
    emulator: SheetsEmulator, api: Any
) -> None:
    get_values(api, "Invoices!A1")
    api.spreadsheets().get(spreadsheetId=BOOK, fields="properties.timeZone").execute()
    batch_update(api, "RAW", [{"range": "Invoices!F2", "values": [["x"]]}])

    assert (emulator.reads, emulator.writes, emulator.round_trips) == (2, 1, 3)
    assert emulator.calls[0].range == "Invoices!A1"


def test_standalone_emulator_serves_a_csv(tmp_path: Path) -> None:
    csv_file = tmp_path / "invoices.csv"
    csv_file.write_text("invoice_id,amount,due_date\nINV-9,1200.50,2025-01-15\n", encoding="utf-8")
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "tests.emulators.sheets", "--port", "0", "--token", "T"),
            *("--csv", str(csv_file), "--spreadsheet-id", "local"),
        ],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        base_url = line.split()[3]
        path = "/v4/spreadsheets/local/values/Invoices?valueRenderOption=UNFORMATTED_VALUE"
        status, body = raw_request(base_url, path, token="T")
    finally:
        process.terminate()
        process.wait(timeout=5)

    assert status == 200
    assert body["values"] == [["invoice_id", "amount", "due_date"], ["INV-9", 1200.5, 45672]]
