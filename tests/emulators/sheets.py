"""A Google Sheets API v4 emulator (WSGI) for driving the real google-api-python-client offline.

Covers what invoice-collector uses: ``spreadsheets.get``, ``spreadsheets.batchUpdate``
(``appendDimension``), ``spreadsheets.values.get`` and ``spreadsheets.values.batchUpdate``, with
Google's response and error shapes, Bearer auth, per-user read/write quotas, injectable faults
and call counters. As Google does, a write past the grid (a tab sized to its data has no spare
column) is refused with "exceeds grid limits" until the tab is widened.

Deliberate differences from Google, so tests catch more than Google would:
- a sheet name with anything but letters, digits, ``_`` and ``.`` must be quoted in A1 notation
  (Google sometimes tolerates ``My Sheet!A1``; the documented form is ``'My Sheet'!A1``);
- only ``HYPERLINK`` formulas evaluate.

Standalone: ``python -m tests.emulators.sheets --port 8902 --token T --csv examples/invoices.csv``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from werkzeug.wrappers import Request, Response

from tests.emulators.server import serve_until_interrupted, serve_wsgi

# Sheets counts days from 1899-12-30 (serial 0); a date cell's value *is* that number.
SHEETS_EPOCH = dt.date(1899, 12, 30)
DEFAULT_ROWS, DEFAULT_COLUMNS = 1000, 26  # a new Google sheet's grid
CellValue = str | int | float | bool

_A1_RANGE = re.compile(r"^([A-Z]*)(\d*)(?::([A-Z]*)(\d*))?$")
_PLAIN_TITLE = re.compile(r"^[A-Za-z0-9_.]+$")
_A1_CELL = re.compile(r"^[A-Za-z]{1,3}\d+$")  # columns run to ZZZ
_CELL_LIKE = re.compile(r"^([A-Za-z]{1,3}\d+|[Rr]\d+[Cc]\d+)$")  # titles that read as a cell
_NUMBER_TEXT = re.compile(r"^[+-]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?$|^[+-]?\.\d+$")
_ISO_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_ISO_DATETIME = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})[ T](\d{1,2}):(\d{2})(?::(\d{2}))?$")
_US_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")
_HYPERLINK = re.compile(
    r'^=HYPERLINK\(\s*"((?:[^"]|"")*)"\s*(?:,\s*"((?:[^"]|"")*)"\s*)?\)$', re.IGNORECASE
)
_FIELD_NAME = re.compile(r"[A-Za-z_*][A-Za-z0-9_*]*(?:\.[A-Za-z_*][A-Za-z0-9_*]*)*")


class ApiError(Exception):
    """An error the emulator answers with, in Google's JSON error shape."""

    def __init__(
        self,
        code: int,
        status: str,
        message: str,
        *,
        reason: str | None = None,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.status, self.message = code, status, message
        self.reason, self.details, self.headers = reason, details, headers or {}

    def response(self) -> Response:
        """The HTTP response Google would send."""
        error: dict[str, Any] = {"code": self.code, "message": self.message, "status": self.status}
        if self.reason:
            error["errors"] = [{"message": self.message, "domain": "global", "reason": self.reason}]
        if self.details:
            error["details"] = self.details
        return _json_response({"error": error}, self.code, self.headers)


def _bad_request(message: str) -> ApiError:
    return ApiError(400, "INVALID_ARGUMENT", message, reason="badRequest")


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------
@dataclass
class Cell:
    """One non-empty cell: its effective value, the formula behind it, its date format if any."""

    value: CellValue
    formula: str | None = None
    date_pattern: str | None = None  # "m/d/yyyy", "yyyy-mm-dd", "yyyy-mm-dd hh:mm:ss"


@dataclass
class Sheet:
    """A tab: sparse cells keyed by 0-based (row, column) and the grid's size."""

    title: str
    sheet_id: int
    index: int
    cells: dict[tuple[int, int], Cell] = field(default_factory=dict)
    row_count: int = DEFAULT_ROWS
    column_count: int = DEFAULT_COLUMNS

    def put(self, row: int, col: int, cell: Cell | None) -> None:
        """Store (or with None, clear) a cell, growing the grid (a tab's set-up, an append's
        inserted rows); values.batchUpdate refuses a write past the grid before it gets here."""
        if cell is None:
            self.cells.pop((row, col), None)
            return
        self.cells[(row, col)] = cell
        self.row_count = max(self.row_count, row + 1)
        self.column_count = max(self.column_count, col + 1)


@dataclass
class Spreadsheet:
    """A spreadsheet: its id, properties and tabs in order."""

    spreadsheet_id: str
    title: str
    timezone: str
    locale: str
    sheets: dict[str, Sheet] = field(default_factory=dict)


@dataclass(frozen=True)
class Call:
    """One HTTP request the emulator answered."""

    method: str  # "values.get", "values.batchUpdate", "spreadsheets.get", … or "unknown"
    http_method: str
    path: str
    query: dict[str, str]
    status: int
    body: Any = None
    range: str | None = None  # the decoded A1 range of a values.get


@dataclass
class Fault:
    """An injected failure for the next matching request(s)."""

    status: int
    method: str | None
    remaining: int
    retry_after: float | None = None


@dataclass(frozen=True)
class GridRange:
    """A parsed A1 range; 0-based, end-inclusive; None ends are open (to the grid's edge)."""

    sheet: Sheet
    row0: int
    col0: int
    row1: int | None
    col1: int | None


def column_letters(index: int) -> str:
    """0 -> 'A', 25 -> 'Z', 26 -> 'AA'."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def _column_index(letters: str) -> int:
    number = 0
    for char in letters:
        number = number * 26 + ord(char) - ord("A") + 1
    return number - 1


def to_serial(day: dt.date | dt.datetime) -> int | float:
    """A date (int) or date-time (fractional) as a Sheets serial number."""
    if isinstance(day, dt.datetime):
        start = dt.datetime.combine(SHEETS_EPOCH, dt.time())
        return (day.replace(tzinfo=None) - start).total_seconds() / 86400
    return (day - SHEETS_EPOCH).days


def quote_title(title: str) -> str:
    """A sheet title as it appears in A1 notation (quoted when it must be)."""
    if _PLAIN_TITLE.match(title) and not _CELL_LIKE.match(title):
        return title
    return "'" + title.replace("'", "''") + "'"


# ---------------------------------------------------------------------------------------------
# Cell input and rendering
# ---------------------------------------------------------------------------------------------
def python_cell(value: object) -> Cell | None:
    """A cell from a Python value as a test sets it: date -> date cell, '' / None -> empty."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return Cell(to_serial(value), date_pattern="m/d/yyyy h:mm:ss")
    if isinstance(value, dt.date):
        return Cell(to_serial(value), date_pattern="m/d/yyyy")
    if isinstance(value, str) and value.startswith("="):
        return _formula_cell(value)
    if isinstance(value, str | int | float | bool):
        return Cell(value)
    raise TypeError(f"a cell cannot hold {type(value).__name__}")


def _formula_cell(formula: str) -> Cell:
    match = _HYPERLINK.match(formula)
    if match:
        url = match.group(1).replace('""', '"')
        label = match.group(2).replace('""', '"') if match.group(2) is not None else url
        return Cell(label, formula=formula)
    # Only HYPERLINK evaluates here; Sheets shows #NAME? for a function it does not know.
    return Cell("#NAME?", formula=formula)


def user_entered_cell(value: object) -> Cell | None:
    """Parse a value the way Sheets parses typed input (valueInputOption=USER_ENTERED, en_US)."""
    if not isinstance(value, str):
        return raw_cell(value)
    if value == "":
        return None
    if value.startswith("'"):
        return Cell(value[1:])  # a leading apostrophe forces text and is not part of the value
    if value.startswith("="):
        return _formula_cell(value)
    text = value.strip()
    if text.upper() in ("TRUE", "FALSE"):
        return Cell(text.upper() == "TRUE")
    if _NUMBER_TEXT.match(text):
        number = float(text.replace(",", ""))
        return Cell(int(number) if number.is_integer() and "." not in text else number)
    iso, us = _ISO_DATE.match(text), _US_DATE.match(text)
    if iso or us:
        if iso:
            year, month, day = (int(part) for part in iso.groups())
        elif us:
            month, day, year = (int(part) for part in us.groups())
        try:
            serial = to_serial(dt.date(year, month, day))
        except ValueError:
            return Cell(value)  # "2025-02-30" stays text, as in Sheets
        return Cell(serial, date_pattern="yyyy-mm-dd" if iso else "m/d/yyyy")
    match = _ISO_DATETIME.match(text)
    if match:
        year, month, day, hour, minute, second = (int(part or 0) for part in match.groups())
        try:
            moment = dt.datetime(year, month, day, hour, minute, second)
        except ValueError:
            return Cell(value)
        return Cell(to_serial(moment), date_pattern="yyyy-mm-dd hh:mm:ss")
    return Cell(value)


def raw_cell(value: object) -> Cell | None:
    """A value stored as given (valueInputOption=RAW): text stays text, even '=…' or dates."""
    if value is None or value == "":
        return None
    if isinstance(value, str | int | float | bool):
        return Cell(value)
    raise _bad_request(f"Invalid value: {value!r}")


def _format_date(serial: float, pattern: str) -> str:
    moment = dt.datetime.combine(SHEETS_EPOCH, dt.time()) + dt.timedelta(days=serial)
    if pattern == "yyyy-mm-dd":
        return moment.strftime("%Y-%m-%d")
    if pattern == "yyyy-mm-dd hh:mm:ss":
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    day = f"{moment.month}/{moment.day}/{moment.year}"
    return day if pattern == "m/d/yyyy" else f"{day} {moment.hour}:{moment:%M:%S}"


def _json_number(value: int | float) -> int | float:
    # Google writes 7, not 7.0, for a whole number; the client then hands Python an int.
    return int(value) if isinstance(value, float) and value.is_integer() else value


def render(cell: Cell, value_option: str, datetime_option: str) -> CellValue:
    """A cell as values.get returns it under the given render options."""
    if value_option == "FORMULA" and cell.formula:
        return cell.formula
    value = cell.value
    if value_option == "FORMATTED_VALUE":
        if cell.date_pattern and isinstance(value, int | float):
            return _format_date(value, cell.date_pattern)
        if isinstance(value, bool):
            return "TRUE" if value else "FALSE"
        if isinstance(value, int | float):
            return str(_json_number(value))
        return value
    if cell.date_pattern and isinstance(value, int | float):
        if datetime_option == "FORMATTED_STRING":
            return _format_date(value, cell.date_pattern)
        return _json_number(value)
    if isinstance(value, float):
        return _json_number(value)
    return value


# ---------------------------------------------------------------------------------------------
# Field masks (``fields=properties.timeZone,sheets(properties(title))``)
# ---------------------------------------------------------------------------------------------
def _parse_fields(text: str) -> dict[str, Any]:
    text = text.replace(" ", "")
    pos = 0

    def parse_list() -> dict[str, Any]:
        nonlocal pos
        tree: dict[str, Any] = {}
        while True:
            match = _FIELD_NAME.match(text, pos)
            if not match:
                raise _bad_request(f"Invalid field selection {text}")
            pos = match.end()
            *parents, leaf = match.group().split(".")
            node = tree
            for name in parents:
                child = node.setdefault(name, {})
                if child is None:  # already selected whole
                    break
                node = child
            else:
                if pos < len(text) and text[pos] == "(":
                    pos += 1
                    sub = parse_list()
                    if pos >= len(text) or text[pos] != ")":
                        raise _bad_request(f"Invalid field selection {text}")
                    pos += 1
                    if node.get(leaf, {}) is not None:
                        node.setdefault(leaf, {}).update(sub)
                else:
                    node[leaf] = None
            if pos < len(text) and text[pos] == ",":
                pos += 1
                continue
            return tree

    tree = parse_list()
    if pos != len(text):
        raise _bad_request(f"Invalid field selection {text}")
    return tree


def _apply_fields(value: Any, tree: dict[str, Any] | None) -> Any:
    if tree is None or "*" in tree:
        return value
    if isinstance(value, list):
        return [_apply_fields(item, tree) for item in value]
    if isinstance(value, dict):
        return {key: _apply_fields(value[key], sub) for key, sub in tree.items() if key in value}
    return value


def _json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        json.dumps(payload), status=status, headers=headers, content_type="application/json"
    )


# ---------------------------------------------------------------------------------------------
# The emulator
# ---------------------------------------------------------------------------------------------
class SheetsEmulator:
    """A WSGI Sheets API v4: spreadsheets held in memory, inspectable and settable from tests."""

    def __init__(
        self,
        tokens: Iterable[str] = ("test-token",),
        *,
        read_quota: int = 60,
        write_quota: int = 60,
        quota_window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tokens = set(tokens)
        self.read_quota, self.write_quota, self.quota_window = read_quota, write_quota, quota_window
        self.calls: list[Call] = []
        self._clock = clock
        self._spreadsheets: dict[str, Spreadsheet] = {}
        self._faults: list[Fault] = []
        self._usage: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.RLock()

    # -- setting up ---------------------------------------------------------------------------
    def add_sheet(
        self,
        spreadsheet_id: str,
        title: str,
        rows: Sequence[Sequence[object]] = (),
        *,
        timezone: str = "America/New_York",
        locale: str = "en_US",
        columns: int | None = None,
    ) -> Sheet:
        """Add a tab (creating the spreadsheet on first use); dates become date cells.

        ``columns``: the grid's width (as a sheet imported from a file, sized to its data);
        by default Google's 26, or the data's width if wider."""
        with self._lock:
            book = self._spreadsheets.setdefault(
                spreadsheet_id,
                Spreadsheet(spreadsheet_id, f"Spreadsheet {spreadsheet_id}", timezone, locale),
            )
            book.timezone, book.locale = timezone, locale
            sheet = Sheet(title, sheet_id=len(book.sheets) * 1000, index=len(book.sheets))
            book.sheets[title] = sheet
            for r, row in enumerate(rows):
                for c, value in enumerate(row):
                    sheet.put(r, c, python_cell(value))
            if columns is not None:
                sheet.column_count = max(columns, max(map(len, rows), default=0))
            return sheet

    def set_cell(self, spreadsheet_id: str, a1: str, value: object) -> None:
        """Set one cell from a Python value (``'Sheet'!B2``); '' or None clears it."""
        with self._lock:
            target = self._parse_range(self._book(spreadsheet_id), a1)
            target.sheet.put(target.row0, target.col0, python_cell(value))

    def grid(self, spreadsheet_id: str, title: str) -> list[list[CellValue]]:
        """The tab's effective values as Google returns them unformatted (dates as serials)."""
        with self._lock:
            sheet = self._book(spreadsheet_id).sheets[title]
            return self._values(GridRange(sheet, 0, 0, None, None), "UNFORMATTED_VALUE")

    def cell(self, spreadsheet_id: str, a1: str) -> Cell | None:
        """The stored cell at ``a1`` (value, formula, date format), or None when empty."""
        with self._lock:
            target = self._parse_range(self._book(spreadsheet_id), a1)
            return target.sheet.cells.get((target.row0, target.col0))

    def fail_next(
        self,
        status: int,
        *,
        method: str | None = None,
        times: int = 1,
        retry_after: float | None = None,
    ) -> None:
        """Answer the next ``times`` requests (of ``method``, or any) with ``status``."""
        with self._lock:
            self._faults.append(Fault(status, method, times, retry_after))

    def count(self, method: str | None = None, *, status: int | None = None) -> int:
        """How many requests (of ``method``; with ``status``) were answered."""
        with self._lock:
            return sum(
                1
                for call in self.calls
                if (method is None or call.method == method)
                and (status is None or call.status == status)
            )

    @property
    def reads(self) -> int:
        """Successful read requests (values.get and spreadsheets.get)."""
        return self.count("values.get", status=200) + self.count("spreadsheets.get", status=200)

    @property
    def writes(self) -> int:
        """Successful write requests (values.batchUpdate)."""
        return self.count("values.batchUpdate", status=200)

    @property
    def round_trips(self) -> int:
        """Every HTTP request, failed ones included."""
        return len(self.calls)

    def reset_calls(self) -> None:
        """Forget recorded calls and quota usage (the grid is kept)."""
        with self._lock:
            self.calls.clear()
            self._usage.clear()

    # -- WSGI ---------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Serve one request."""
        request = Request(environ)
        # The raw URI keeps %2F inside a range distinct from a path separator.
        raw_path = str(environ.get("RAW_URI") or environ.get("REQUEST_URI") or request.path)
        path = raw_path.split("?", 1)[0]
        method, body, range_text = "unknown", None, ""
        try:
            method, book_id, range_text = self._route(request.method, path)
            if method in _WRITES:
                body = request.get_json(silent=True)
            with self._lock:
                user = self._authenticate(request)
                self._inject_fault(method)
                self._charge_quota(user, method)
                response = self._dispatch(method, book_id, range_text, request, body)
        except ApiError as error:
            response = error.response()
        with self._lock:
            self.calls.append(
                Call(
                    method,
                    request.method,
                    path,
                    dict(request.args),
                    response.status_code,
                    body,
                    range_text or None,
                )
            )
        return response(environ, start_response)

    def _route(self, http_method: str, path: str) -> tuple[str, str, str]:
        routes = (
            ("GET", r"^/v4/spreadsheets/([^/]+)/values/([^/]+)$", "values.get"),
            ("POST", r"^/v4/spreadsheets/([^/]+)/values:batchUpdate$", "values.batchUpdate"),
            ("POST", r"^/v4/spreadsheets/([^/]+):batchUpdate$", "spreadsheets.batchUpdate"),
            ("GET", r"^/v4/spreadsheets/([^/]+)$", "spreadsheets.get"),
        )
        for verb, pattern, name in routes:
            match = re.match(pattern, path)
            if match and verb == http_method:
                groups = [unquote(group) for group in match.groups()]
                return name, groups[0], groups[1] if len(groups) > 1 else ""
        raise ApiError(404, "NOT_FOUND", f"Method not found: {http_method} {path}")

    def _authenticate(self, request: Request) -> str:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and token in self.tokens:
            return token
        if not header:
            message = (
                "Request is missing required authentication credential. Expected OAuth 2 access"
                " token, login cookie or other valid authentication credential."
            )
            reason = "CREDENTIALS_MISSING"
        else:
            message = (
                "Request had invalid authentication credentials. Expected OAuth 2 access token,"
                " login cookie or other valid authentication credential."
            )
            reason = "ACCESS_TOKEN_EXPIRED"
        raise ApiError(
            401,
            "UNAUTHENTICATED",
            message,
            reason="authError",
            details=[_error_info(reason, {"service": "sheets.googleapis.com"})],
            headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
        )

    def _inject_fault(self, method: str) -> None:
        for fault in self._faults:
            if fault.remaining > 0 and fault.method in (None, method):
                fault.remaining -= 1
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = f"{fault.retry_after:g}"
                if fault.status == 429:
                    kind = "Write" if method in _WRITES else "Read"
                    error = _quota_error(
                        kind, self.write_quota if kind == "Write" else self.read_quota
                    )
                    error.headers.update(headers)
                    raise error
                raise ApiError(
                    fault.status,
                    {500: "INTERNAL", 502: "UNAVAILABLE", 503: "UNAVAILABLE"}.get(
                        fault.status, "UNKNOWN"
                    ),
                    "The service is currently unavailable." if fault.status >= 500 else "Error",
                    reason="backendError" if fault.status >= 500 else None,
                    headers=headers,
                )

    def _charge_quota(self, user: str, method: str) -> None:
        kind = "Write" if method in _WRITES else "Read"
        limit = self.write_quota if kind == "Write" else self.read_quota
        now = self._clock()
        used = self._usage.setdefault((user, kind), deque())
        while used and used[0] <= now - self.quota_window:
            used.popleft()
        if len(used) >= limit:
            raise _quota_error(kind, limit)  # a refused request does not use quota
        used.append(now)

    def _dispatch(
        self, method: str, book_id: str, range_text: str, request: Request, body: Any
    ) -> Response:
        book = self._book(book_id)
        if method == "spreadsheets.get":
            return self._get_spreadsheet(book, request.args.get("fields"))
        if method == "values.get":
            return self._get_values(book, range_text, request.args)
        if method == "spreadsheets.batchUpdate":
            return self._structure_update(book, body)
        return self._batch_update(book, body)

    # -- the three methods --------------------------------------------------------------------
    def _get_spreadsheet(self, book: Spreadsheet, fields: str | None) -> Response:
        payload = {
            "spreadsheetId": book.spreadsheet_id,
            "properties": {
                "title": book.title,
                "locale": book.locale,
                "autoRecalc": "ON_CHANGE",
                "timeZone": book.timezone,
            },
            "sheets": [
                {
                    "properties": {
                        "sheetId": sheet.sheet_id,
                        "title": sheet.title,
                        "index": sheet.index,
                        "sheetType": "GRID",
                        "gridProperties": {
                            "rowCount": sheet.row_count,
                            "columnCount": sheet.column_count,
                        },
                    }
                }
                for sheet in book.sheets.values()
            ],
            "spreadsheetUrl": f"https://docs.google.com/spreadsheets/d/{book.spreadsheet_id}/edit",
        }
        return _json_response(_apply_fields(payload, _parse_fields(fields) if fields else None))

    def _get_values(self, book: Spreadsheet, range_text: str, args: Any) -> Response:
        value_option = _option(
            args,
            "valueRenderOption",
            "FORMATTED_VALUE",
            ("FORMATTED_VALUE", "UNFORMATTED_VALUE", "FORMULA"),
        )
        datetime_option = _option(
            args, "dateTimeRenderOption", "SERIAL_NUMBER", ("SERIAL_NUMBER", "FORMATTED_STRING")
        )
        dimension = _option(args, "majorDimension", "ROWS", ("ROWS", "COLUMNS"))
        target = self._parse_range(book, range_text)
        sheet = target.sheet
        if target.row0 >= sheet.row_count or target.col0 >= sheet.column_count:
            raise _bad_request(
                f"Range ({range_text}) exceeds grid limits. Max rows: {sheet.row_count},"
                f" max columns: {sheet.column_count}"
            )
        values = self._values(target, value_option, datetime_option, dimension)
        payload: dict[str, Any] = {"range": _a1(target), "majorDimension": dimension}
        if values:  # Google leaves the key out altogether for an empty range
            payload["values"] = values
        return _json_response(payload)

    def _batch_update(self, book: Spreadsheet, body: Any) -> Response:
        if not isinstance(body, dict):
            raise _bad_request("Invalid JSON payload received.")
        option = body.get("valueInputOption")
        if option is None:
            raise _bad_request("'valueInputOption' is required but not specified")
        if option not in ("RAW", "USER_ENTERED"):
            raise _bad_request(f"Invalid value at 'value_input_option', \"{option}\"")
        parse = raw_cell if option == "RAW" else user_entered_cell
        # Validate everything first: Google applies a batch all or nothing.
        planned: list[tuple[GridRange, list[list[Any]], str]] = []
        for i, item in enumerate(body.get("data") or []):
            try:
                target = self._parse_range(book, str(item.get("range", "")))
            except ApiError as error:
                raise _bad_request(f"Invalid data[{i}]: {error.message}") from None
            dimension = item.get("majorDimension", "ROWS")
            matrix = item.get("values") or []
            if dimension == "COLUMNS":
                width = max((len(col) for col in matrix), default=0)
                matrix = [
                    [col[r] if r < len(col) else None for col in matrix] for r in range(width)
                ]
            _check_fits(i, target, matrix)
            width = max((len(row) for row in matrix), default=0)
            sheet = target.sheet
            if (
                target.row0 + len(matrix) > sheet.row_count
                or target.col0 + width > sheet.column_count
            ):
                raise _bad_request(
                    f"Invalid data[{i}]: Range ({item.get('range')}) exceeds grid limits. Max"
                    f" rows: {sheet.row_count}, max columns: {sheet.column_count}"
                )
            planned.append((target, matrix, str(item.get("range"))))
        responses, touched = [], set()
        for target, matrix, _ in planned:
            cells = 0
            rows, cols = set(), set()
            for r, row in enumerate(matrix):
                for c, value in enumerate(row):
                    if value is None:
                        continue  # documented: null values are skipped, the cell is left alone
                    target.sheet.put(target.row0 + r, target.col0 + c, parse(value))
                    cells += 1
                    rows.add(target.row0 + r)
                    cols.add(target.col0 + c)
                    touched.add((target.sheet.title, target.row0 + r, target.col0 + c))
            height = len(matrix)
            width = max((len(row) for row in matrix), default=0)
            written = GridRange(
                target.sheet,
                target.row0,
                target.col0,
                target.row0 + max(height, 1) - 1,
                target.col0 + max(width, 1) - 1,
            )
            responses.append(
                {
                    "spreadsheetId": book.spreadsheet_id,
                    "updatedRange": _a1(written),
                    "updatedRows": len(rows),
                    "updatedColumns": len(cols),
                    "updatedCells": cells,
                }
            )
        payload = {
            "spreadsheetId": book.spreadsheet_id,
            "totalUpdatedRows": len({(s, r) for s, r, _ in touched}),
            "totalUpdatedColumns": len({(s, c) for s, _, c in touched}),
            "totalUpdatedCells": len(touched),
            "totalUpdatedSheets": len({s for s, _, _ in touched}),
            "responses": responses,
        }
        return _json_response(payload)

    # -- internals ----------------------------------------------------------------------------
    def _structure_update(self, book: Spreadsheet, body: Any) -> Response:
        """spreadsheets.batchUpdate: only appendDimension, validated first, applied together."""
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests:
            raise _bad_request("Must specify at least one request.")
        by_id = {sheet.sheet_id: sheet for sheet in book.sheets.values()}
        planned = []
        for i, item in enumerate(requests):
            append = item.get("appendDimension") if isinstance(item, dict) else None
            if not isinstance(append, dict) or len(item) != 1:
                raise _bad_request(f"Invalid requests[{i}]: the emulator knows appendDimension")
            sheet = by_id.get(append.get("sheetId"))
            if sheet is None:
                grid = append.get("sheetId")
                raise _bad_request(
                    f"Invalid requests[{i}].appendDimension: No grid with id: {grid}"
                )
            length = append.get("length")
            dimension = append.get("dimension")
            if dimension not in ("ROWS", "COLUMNS") or not isinstance(length, int) or length < 1:
                raise _bad_request(
                    f"Invalid requests[{i}].appendDimension: length must be positive"
                )
            planned.append((sheet, dimension, length))
        for sheet, dimension, length in planned:
            if dimension == "COLUMNS":
                sheet.column_count += length
            else:
                sheet.row_count += length
        return _json_response(
            {"spreadsheetId": book.spreadsheet_id, "replies": [{} for _ in planned]}
        )

    def _book(self, spreadsheet_id: str) -> Spreadsheet:
        book = self._spreadsheets.get(spreadsheet_id)
        if book is None:
            raise ApiError(404, "NOT_FOUND", "Requested entity was not found.", reason="notFound")
        return book

    def _parse_range(self, book: Spreadsheet, text: str) -> GridRange:
        error = _bad_request(f"Unable to parse range: {text}")
        title, cells = _split_range(text)
        if title is None:
            # No sheet name: Google uses the first sheet, unless the text is a sheet's name that
            # does not read as a cell: unquoted "Q1" is cell Q1 even beside a tab called Q1
            # (gspread #636/#717, gspread-dataframe #54 "Range (query!CRM26) exceeds grid ...").
            if cells in book.sheets and not _A1_CELL.match(cells):
                title, cells = cells, ""
            elif not book.sheets:
                raise error
            else:
                title = next(iter(book.sheets))
        elif not title:
            raise error
        sheet = book.sheets.get(title)
        if sheet is None:
            raise error
        if not cells:
            return GridRange(sheet, 0, 0, None, None)
        match = _A1_RANGE.match(cells.upper())
        if not match or not any(match.groups()):
            raise error
        c0, r0, c1, r1 = match.groups()
        if ":" not in cells and not (c0 and r0):
            raise error  # a lone "A" or "3" is not a range
        if ":" in cells and not (c1 or r1):
            raise error
        start_row = int(r0) - 1 if r0 else 0
        start_col = _column_index(c0) if c0 else 0
        end_row: int | None
        end_col: int | None
        if ":" not in cells:
            end_row, end_col = start_row, start_col
        else:
            end_row = int(r1) - 1 if r1 else None
            end_col = _column_index(c1) if c1 else None
        if min(start_row, start_col, end_row or 0, end_col or 0) < 0:
            raise error
        if end_row is not None and end_row < start_row:
            start_row, end_row = end_row, start_row
        if end_col is not None and end_col < start_col:
            start_col, end_col = end_col, start_col
        return GridRange(sheet, start_row, start_col, end_row, end_col)

    def _values(
        self,
        target: GridRange,
        value_option: str,
        datetime_option: str = "SERIAL_NUMBER",
        dimension: str = "ROWS",
    ) -> list[list[CellValue]]:
        sheet = target.sheet
        row1 = min(sheet.row_count - 1, target.row1 if target.row1 is not None else 10**9)
        col1 = min(sheet.column_count - 1, target.col1 if target.col1 is not None else 10**9)
        outer = (
            range(target.row0, row1 + 1) if dimension == "ROWS" else range(target.col0, col1 + 1)
        )
        inner = (
            range(target.col0, col1 + 1) if dimension == "ROWS" else range(target.row0, row1 + 1)
        )
        lines: list[list[CellValue]] = []
        for a in outer:
            line: list[CellValue] = []
            for b in inner:
                cell = sheet.cells.get((a, b) if dimension == "ROWS" else (b, a))
                line.append("" if cell is None else render(cell, value_option, datetime_option))
            while line and line[-1] == "":
                line.pop()  # Google omits trailing empty cells: rows come back ragged
            lines.append(line)
        while lines and not lines[-1]:
            lines.pop()  # …and trailing empty rows
        return lines


def _split_range(text: str) -> tuple[str | None, str]:
    """('Sheet title' or None, cells) from A1 text, unquoting ``'Bob''s'``."""
    if text.startswith("'"):
        i, chars = 1, []
        while i < len(text):
            if text[i] == "'":
                if text[i + 1 : i + 2] == "'":
                    chars.append("'")
                    i += 2
                    continue
                break
            chars.append(text[i])
            i += 1
        else:
            return "", text  # unterminated quote
        rest = text[i + 1 :]
        if rest and not rest.startswith("!"):
            return "", text
        return "".join(chars), rest[1:]
    if "!" in text:
        title, cells = text.rsplit("!", 1)
        return (title if _PLAIN_TITLE.match(title) else ""), cells
    return None, text


def _a1(target: GridRange) -> str:
    sheet = target.sheet
    row1 = min(sheet.row_count - 1, target.row1 if target.row1 is not None else 10**9)
    col1 = min(sheet.column_count - 1, target.col1 if target.col1 is not None else 10**9)
    start = f"{column_letters(target.col0)}{target.row0 + 1}"
    end = f"{column_letters(col1)}{row1 + 1}"
    cells = start if start == end else f"{start}:{end}"
    return f"{quote_title(sheet.title)}!{cells}"


_WRITES = frozenset({"values.batchUpdate", "spreadsheets.batchUpdate"})


def _check_fits(index: int, target: GridRange, matrix: list[list[Any]]) -> None:
    if target.row1 is not None and len(matrix) > target.row1 - target.row0 + 1:
        raise _bad_request(
            f"Invalid data[{index}]: Requested writing within range [{_a1(target)}], but tried"
            f" writing to row [{target.row0 + len(matrix)}]"
        )
    width = max((len(row) for row in matrix), default=0)
    if target.col1 is not None and width > target.col1 - target.col0 + 1:
        raise _bad_request(
            f"Invalid data[{index}]: Requested writing within range [{_a1(target)}], but tried"
            f" writing to column [{column_letters(target.col0 + width - 1)}]"
        )


def _option(args: Any, name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = str(args.get(name, default))
    if value not in allowed:
        raise _bad_request(f"Invalid value at '{name}', \"{value}\"")
    return value


def _error_info(reason: str, metadata: dict[str, str]) -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": "googleapis.com",
        "metadata": metadata,
    }


def _quota_error(kind: str, limit: int) -> ApiError:
    message = (
        f"Quota exceeded for quota metric '{kind} requests' and limit '{kind} requests per minute"
        " per user' of service 'sheets.googleapis.com' for consumer 'project_number:000000000000'."
    )
    metadata = {
        "service": "sheets.googleapis.com",
        "consumer": "projects/000000000000",
        "quota_metric": f"sheets.googleapis.com/{kind.lower()}_requests",
        "quota_limit": f"{kind}RequestsPerMinutePerUser",
        "quota_limit_value": str(limit),
        "quota_location": "global",
    }
    return ApiError(
        429,
        "RESOURCE_EXHAUSTED",
        message,
        reason="rateLimitExceeded",
        details=[_error_info("RATE_LIMIT_EXCEEDED", metadata)],
    )


@contextmanager
def running_sheets_emulator(**options: Any) -> Iterator[tuple[SheetsEmulator, str]]:
    """Serve a fresh SheetsEmulator(**options) on 127.0.0.1; yield (emulator, base URL)."""
    emulator = SheetsEmulator(**options)
    with serve_wsgi(emulator) as base_url:
        yield emulator, base_url


def load_csv(
    emulator: SheetsEmulator, spreadsheet_id: str, title: str, path: Path, timezone: str
) -> Sheet:
    """Load a CSV file as a tab, each cell parsed as if typed (numbers and dates convert)."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    sheet = emulator.add_sheet(spreadsheet_id, title, timezone=timezone)
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            sheet.put(r, c, user_entered_cell(text))
    return sheet


def main(argv: Sequence[str] | None = None) -> None:
    """Run the emulator in the foreground."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8902)
    parser.add_argument("--token", action="append", help="accepted Bearer token (repeatable)")
    parser.add_argument("--csv", type=Path, help="load this CSV as the invoices tab")
    parser.add_argument("--spreadsheet-id", default="local-spreadsheet")
    parser.add_argument("--sheet", default="Invoices", help="title of the tab the CSV becomes")
    parser.add_argument("--timezone", default="America/New_York")
    parser.add_argument("--read-quota", type=int, default=60)
    parser.add_argument("--write-quota", type=int, default=60)
    args = parser.parse_args(argv)
    emulator = SheetsEmulator(
        args.token or ["test-token"], read_quota=args.read_quota, write_quota=args.write_quota
    )
    if args.csv:
        load_csv(emulator, args.spreadsheet_id, args.sheet, args.csv, args.timezone)
    else:
        emulator.add_sheet(args.spreadsheet_id, args.sheet, timezone=args.timezone)
    serve_until_interrupted(
        emulator,
        args.host,
        args.port,
        lambda url: (
            f"Sheets emulator on {url} spreadsheet {args.spreadsheet_id!r} tab {args.sheet!r}"
        ),
    )


if __name__ == "__main__":
    main()
