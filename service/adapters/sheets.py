"""Google Sheets as the invoice source: one ``values.get`` per read, one ``values.batchUpdate``
per write-back, whatever the number of rows (Sheets allows 60 reads and 60 writes per minute
per user, DESIGN §7)."""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from itertools import groupby
from typing import Any, NamedTuple, cast

from google.auth.credentials import Credentials
from google.auth.exceptions import RefreshError, TransportError
from googleapiclient.errors import HttpError
from httplib2 import HttpLib2Error

from service.adapters.google_api import build_service, error_details, is_rate_limited
from service.adapters.http_retry import RetryPolicy, Transient, retry_after_seconds
from service.domain.dates import DateParseError, parse_date
from service.domain.invoice import INPUT_FIELDS, OUTPUT_FIELDS, header_columns, normalize_header
from service.ports import AuthorizationError, RowsMoved, SheetSnapshot, SourceRow, WriteBack

# Columns run to ZZZ at most, so "Sheet1" is a title and "AB12" a cell (quote such titles).
_CELLS = re.compile(r"^([A-Za-z]{0,3})(\d*)(?::([A-Za-z]{0,3})(\d*))?$")
# Only this exact shape is written as a formula; other text is forced to text (formula injection).
_HYPERLINK = re.compile(r'^=HYPERLINK\("(https?://(?:[^"]|"")+)",\s*"((?:[^"]|"")*)"\)$')
_OUTPUT_KEYS = frozenset(normalize_header(name) for name in OUTPUT_FIELDS)
_INPUT_KEYS = frozenset(normalize_header(name) for name in INPUT_FIELDS)
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_ERROR_CODES = {400: "bad_request", 403: "forbidden", 404: "not_found", 429: "rate_limited"}
SHEETS_RETRY = RetryPolicy(max_attempts=5, base_delay_s=0.5, max_delay_s=16.0)


class SheetsError(Exception):
    """A Sheets request failed. ``retryable`` says whether trying again later may help."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        code: str = "sheets_error",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.code = code
        self.retry_after = retry_after


class _TransientSheetsError(SheetsError, Transient):
    """A SheetsError the retry policy tries again; the last one is what callers see."""


class SheetRangeError(SheetsError, ValueError):
    """GOOGLE_SHEETS_RANGE cannot be read as a table: a setting to fix, never worth a retry."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(
            f"GOOGLE_SHEETS_RANGE {message}", retryable=False, status=status, code="bad_range"
        )


class SheetsAuthorizationError(AuthorizationError):
    """The Sheets credentials are missing, expired or revoked: stop the run, re-authorise."""

    def __init__(self, message: str = "Google Sheets authorisation failed: re-authorise") -> None:
        super().__init__(message)


@dataclass(frozen=True)
class SheetRange:
    """An A1 range: optional sheet title, 1-based first row, 0-based columns; None = open."""

    sheet: str | None
    first_row: int = 1
    first_col: int = 0
    last_row: int | None = None
    last_col: int | None = None

    @classmethod
    def parse(cls, text: str) -> SheetRange:
        """Parse ``'Tab'!A1:Z``, ``Tab!A:Z``, ``Tab`` or ``A1:Z`` (the quotes are optional)."""
        text = text.strip()
        quoted = re.fullmatch(r"'((?:[^']|'')*)'(?:!(.*))?", text, re.DOTALL)
        sheet: str | None
        if quoted:
            sheet, cells = quoted[1].replace("''", "'"), quoted[2] or ""
        elif text.startswith("'"):
            raise SheetRangeError(f"{text!r} is not an A1 range (unmatched quote)")
        elif "!" in text:
            sheet, cells = text.rsplit("!", 1)
        elif _CELLS.match(text) and (":" in text or any(ch.isdigit() for ch in text)):
            sheet, cells = None, text
        else:
            sheet, cells = text, ""
        if not cells:
            if not sheet:
                raise SheetRangeError(f"{text!r} names neither a sheet nor cells")
            return cls(sheet)
        match = _CELLS.match(cells)
        single = ":" not in cells  # a single cell needs both parts; a range an end
        if not match or not ((match[1] and match[2]) if single else (match[3] or match[4])):
            raise SheetRangeError(f"{text!r} is not an A1 range")
        if single and sheet is None:
            # Google reads an unquoted "Q1" as that cell of the first tab, even beside a tab
            # called Q1: one cell, so no invoice would ever be read, silently.
            raise SheetRangeError(
                f"{text!r} is one cell of the first tab, not a table: to read the tab {text},"
                f" quote it ('{text}')"
            )
        c0, r0, c1, r1 = match.groups()
        if single:
            c1, r1 = c0, r0
        return cls(
            sheet or None,
            first_row=int(r0) if r0 else 1,
            first_col=column_index(c0) if c0 else 0,
            last_row=int(r1) if r1 else None,
            last_col=column_index(c1) if c1 else None,
        )

    def a1(self) -> str:
        """The range in A1 notation, the sheet title quoted."""
        whole = (self.first_row, self.first_col, self.last_row, self.last_col) == (1, 0, None, None)
        if whole and self.sheet is not None:
            return self.cells("")
        end_col = column_letters(self.last_col) if self.last_col is not None else ""
        end_row = str(self.last_row) if self.last_row is not None else ""
        return self.cells(f"{column_letters(self.first_col)}{self.first_row}:{end_col}{end_row}")

    def cells(self, cells: str) -> str:
        """``cells`` (e.g. ``B7:D7``) on this range's sheet; quoting a title is always valid."""
        if self.sheet is None:
            return cells
        title = "'" + self.sheet.replace("'", "''") + "'"
        return f"{title}!{cells}" if cells else title


def column_letters(index: int) -> str:
    """0 -> 'A', 25 -> 'Z', 26 -> 'AA'."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def column_index(letters: str) -> int:
    """'A' -> 0, 'AA' -> 26."""
    number = 0
    for char in letters.upper():
        number = number * 26 + ord(char) - ord("A") + 1
    return number - 1


def hyperlink(url: str, text: str) -> str:
    """A ``=HYPERLINK("url","text")`` formula for ``reminder_status`` (http(s) URLs only)."""
    if not url.startswith(("https://", "http://")):
        raise ValueError("a reminder link must be an http(s) URL")
    return '=HYPERLINK("{}","{}")'.format(url.replace('"', '""'), text.replace('"', '""'))


class _Cell(NamedTuple):
    """One output cell to write: what goes over the wire and what it will read back as."""

    send: object
    reads_as: object


class SheetsSource:
    """The invoices tab of one spreadsheet, through the Sheets API v4 (implements InvoiceSource)."""

    def __init__(
        self,
        spreadsheet_id: str,
        sheet_range: str,
        *,
        credentials: Credentials | str,
        endpoint: str | None = None,
        timezone: str | None = None,
        fetch_timezone: bool = True,
        column_map: Mapping[str, str] | None = None,
        retry: RetryPolicy = SHEETS_RETRY,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.spreadsheet_id = spreadsheet_id
        self.range = SheetRange.parse(sheet_range)
        self._sheets = build_service("sheets", "v4", credentials, endpoint).spreadsheets()
        self._values = self._sheets.values()
        # A configured TIMEZONE saves a read; otherwise it is fetched once per instance.
        self._timezone = timezone
        self._fetch_timezone = fetch_timezone
        self._retry = retry
        self._sleep = sleep
        self._column_map = column_map or {}  # our field -> the sheet's own header (COLUMN_MAP)
        # httplib2 connections are not thread-safe: one request at a time per source.
        self._lock = threading.Lock()

    def spreadsheet_timezone(self) -> str | None:
        """The configured zone, else the spreadsheet's own, asked once (``spreadsheets.get``)."""
        if self._timezone is None and self._fetch_timezone:
            book = self._execute(
                self._sheets.get(spreadsheetId=self.spreadsheet_id, fields="properties.timeZone")
            )
            self._timezone = book.get("properties", {}).get("timeZone") or None
            self._fetch_timezone = False
        return self._timezone

    def append_rows(self, tab: str, rows: Sequence[Sequence[object]]) -> None:
        """Add ``rows`` under the last line of ``tab`` in one ``values.append``, as text."""
        self._execute(
            self._values.append(
                spreadsheetId=self.spreadsheet_id,
                range=SheetRange(tab).cells("A1"),
                # RAW: a client's name is never read as a formula; INSERT_ROWS: nothing below
                # the table is overwritten.
                valueInputOption="RAW",
                insertDataOption="INSERT_ROWS",
                body={"values": [list(row) for row in rows]},
            )
        )

    def read(self) -> SheetSnapshot:
        """One ``values.get`` of the range (plus, once, the timezone's ``spreadsheets.get``)."""
        self.spreadsheet_timezone()
        grid = self._grid()
        headers = tuple(_text(cell) for cell in grid[0]) if grid else ()
        rows = []
        for offset, cells in enumerate(grid[1:], start=1):
            if all(_text(cell) == "" for cell in cells):
                continue  # a blank row is no invoice, but the numbering below stays the sheet's
            values: dict[str, object] = {}
            for i, header in enumerate(headers):
                if header and header not in values:
                    values[header] = cells[i] if i < len(cells) else ""
            rows.append(SourceRow(row=self.range.first_row + offset, values=values))
        return SheetSnapshot(
            scope=self.spreadsheet_id, headers=headers, rows=tuple(rows), timezone=self._timezone
        )

    def _grid(self) -> list[list[object]]:
        request = self._values.get(
            spreadsheetId=self.spreadsheet_id,
            range=self.range.a1(),
            majorDimension="ROWS",
            # Unformatted numbers and serial dates: no locale-dependent text to re-parse.
            valueRenderOption="UNFORMATTED_VALUE",
            dateTimeRenderOption="SERIAL_NUMBER",
        )
        try:
            response = self._execute(request)
        except SheetsError as exc:
            if exc.status != 400:
                raise
            # All a values.get can get wrong is its range: a tab renamed or deleted ("Unable to
            # parse range") or cells past the tab's edge ("exceeds grid limits"). One more read
            # tells the tabs there are, so the bookkeeper sees what to set.
            try:
                tabs = ", ".join(repr(tab["title"]) for tab in self._tabs())
            except (SheetsError, AuthorizationError):
                tabs = ""
            raise SheetRangeError(
                f"{self.range.a1()} does not fit the spreadsheet ({exc})"
                + (f"; its tabs: {tabs}" if tabs else ""),
                status=400,
            ) from exc
        return cast(list[list[object]], response.get("values", []))

    def write_back(self, snapshot: SheetSnapshot, updates: Sequence[WriteBack]) -> int:
        """Write the changed output cells in one ``values.batchUpdate``; return the rows written.

        The sheet is read again first: while a run drafts, a person may sort it or insert and
        delete rows, so each result goes to the row that holds its invoice id now, and one whose
        id has gone or is doubled is left for the next run (RowsMoved). A ``None`` stage or date
        leaves its cell alone; missing output columns go after the last.
        """
        if snapshot.scope != self.spreadsheet_id:
            raise ValueError(f"snapshot of {snapshot.scope!r}, not {self.spreadsheet_id!r}")
        read_as = {row.row: row for row in snapshot.rows}
        id_key = normalize_header("invoice_id")
        was = header_columns(snapshot.headers, self._column_map).get(id_key)
        id_header = snapshot.headers[was] if was is not None else None
        grid = self._grid()
        columns = header_columns([_text(c) for c in grid[0]] if grid else [], self._column_map)
        now_at: dict[str, list[int]] = {}  # invoice id -> the grid rows holding it now
        if (id_col := columns.get(id_key)) is not None:
            for offset, cells in enumerate(grid[1:], start=1):
                if id_col < len(cells) and (text := _text(cells[id_col])):
                    now_at.setdefault(text, []).append(offset)
        # First free column: past every header and every cell, even under a blank header.
        free = max((len(cells) for cells in grid), default=0)
        last = self.range.last_col
        room = None if last is None else last - self.range.first_col + 1
        changes: dict[int, dict[int, _Cell]] = {}
        new_headers: dict[int, str] = {}
        moved: list[str] = []
        for update in updates:
            source = read_as.get(update.row)
            if source is None:
                raise ValueError(f"row {update.row} is not an invoice row of this snapshot")
            invoice_id = _text(source.values.get(id_header, "")) if id_header else ""
            found = now_at.get(invoice_id, [])
            if len(found) != 1:
                moved.append(invoice_id or f"row {update.row}")
                continue
            cells = grid[found[0]]
            for name, cell in _desired_cells(update):
                key = normalize_header(name)
                col = columns.get(key)
                current = cells[col] if col is not None and col < len(cells) else ""
                if _same(current, cell.reads_as):
                    continue
                if col is None:
                    col = columns[key] = free + len(new_headers)
                    if room is not None and col >= room:
                        raise SheetsError(
                            f"no room for column {name!r} inside {self.range.a1()}: widen the"
                            " range or add the column to the sheet",
                            retryable=False,
                            code="range_too_narrow",
                        )
                    new_headers[col] = name
                    changes.setdefault(0, {})[col] = _Cell("'" + name, name)
                changes.setdefault(found[0], {})[col] = cell
        if changes:
            data = [vr for row in sorted(changes) for vr in _ranges(self.range, row, changes[row])]
            # USER_ENTERED: ISO dates become date cells and HYPERLINK works; other text is sent
            # after an apostrophe, which Sheets reads as text and does not store.
            body = {"valueInputOption": "USER_ENTERED", "data": data}
            try:
                self._execute(
                    self._values.batchUpdate(spreadsheetId=self.spreadsheet_id, body=body)
                )
            except SheetsError as exc:
                # A tab sized to its data (an imported file) has no spare column for ours, and
                # Google refuses a write past the grid: widen the tab once, then write.
                if not new_headers or "exceeds grid limits" not in str(exc):
                    raise
                self._widen(self.range.first_col + max(new_headers) + 1)
                self._execute(
                    self._values.batchUpdate(spreadsheetId=self.spreadsheet_id, body=body)
                )
        written = len(changes) - bool(new_headers)  # the header row is no invoice row
        if moved:
            raise RowsMoved(
                f"{len(moved)} row{'s' if len(moved) != 1 else ''} moved or were deleted while "
                f"the run drafted ({', '.join(moved[:10])}"
                f"{', …' if len(moved) > 10 else ''}): their drafts exist, their results were "
                "not written",
                written=written,
            )
        return written

    def _tabs(self) -> list[dict[str, Any]]:
        """Each tab's properties: its id, title and width (one ``spreadsheets.get``)."""
        book = self._execute(
            self._sheets.get(
                spreadsheetId=self.spreadsheet_id,
                fields="sheets.properties(sheetId,title,gridProperties.columnCount)",
            )
        )
        return [tab["properties"] for tab in book.get("sheets", [])]

    def _widen(self, columns: int) -> None:
        """Give the range's tab at least ``columns`` columns (``appendDimension``)."""
        tabs = self._tabs()
        tab = next((t for t in tabs if self.range.sheet in (None, t["title"])), None)
        if tab is None:
            raise SheetsError(f"no tab {self.range.sheet!r}", retryable=False, code="not_found")
        missing = columns - tab["gridProperties"]["columnCount"]
        if missing > 0:
            append = {"sheetId": tab["sheetId"], "dimension": "COLUMNS", "length": missing}
            self._execute(
                self._sheets.batchUpdate(
                    spreadsheetId=self.spreadsheet_id,
                    body={"requests": [{"appendDimension": append}]},
                )
            )

    def _execute(self, request: Any) -> dict[str, Any]:
        """Run one API request, backing off on 429/5xx/rate-limit 403 and transport errors."""

        def attempt() -> dict[str, Any]:
            try:
                with self._lock:
                    # The client's own retries are off: the policy owns backoff and counting.
                    return cast(dict[str, Any], request.execute(num_retries=0))
            except RefreshError as exc:
                # A bare-token Credentials turns Google's 401 into RefreshError (DESIGN §7).
                raise SheetsAuthorizationError() from exc
            except HttpError as exc:
                raise _classify(exc) from exc
            except (OSError, HttpLib2Error, TransportError) as exc:
                raise _TransientSheetsError(
                    f"Sheets API unreachable: {exc}", retryable=True
                ) from exc

        # Safe to repeat: a read changes nothing and a batchUpdate writes the same values;
        # an append retried after a 5xx that did land repeats its log lines, nothing worse.
        return self._retry.run(attempt, sleep=self._sleep)


def _classify(exc: HttpError) -> Exception:
    """The error to raise for an HTTP error; a _TransientSheetsError is worth another attempt."""
    status = int(exc.resp.status)
    if status == 401:
        return SheetsAuthorizationError()
    reasons, message = error_details(exc.content)
    retryable = status in _RETRY_STATUSES or is_rate_limited(status, reasons)
    return (_TransientSheetsError if retryable else SheetsError)(
        f"Sheets API answered {status}: {message or exc.resp.reason or 'error'}",
        retryable=retryable,
        status=status,
        code=_ERROR_CODES.get(status, "unavailable" if status >= 500 else "sheets_error"),
        retry_after=retry_after_seconds(exc.resp.get("retry-after")),
    )


def _desired_cells(update: WriteBack) -> Iterable[tuple[str, _Cell]]:
    if update.last_stage_sent is not None:
        yield "last_stage_sent", _Cell(update.last_stage_sent, update.last_stage_sent)
    if update.last_sent_at is not None:
        # ISO text under USER_ENTERED is parsed as a date in every locale and gets a date
        # format; a bare serial number would show as 45679 unless the column was formatted.
        yield "last_sent_at", _Cell(update.last_sent_at.isoformat(), update.last_sent_at)
    status = update.reminder_status
    if update.reminder_url and update.reminder_url.startswith(("https://", "http://")):
        status = hyperlink(update.reminder_url, status)
    yield "reminder_status", _text_cell(status, allow_link=True)
    for name, value in update.extra.items():
        key = normalize_header(name)
        if key in _INPUT_KEYS:
            # The invoice's own data is the bookkeeper's; a write-back never rewrites it.
            raise ValueError(f"extra field {name!r} names an input column")
        if key not in _OUTPUT_KEYS:
            yield name, _text_cell(value, allow_link=False)


def _text_cell(text: str, *, allow_link: bool) -> _Cell:
    match = _HYPERLINK.match(text) if allow_link else None
    if match:
        return _Cell(text, match.group(2).replace('""', '"'))  # reads back as its label
    return _Cell("'" + text if text else "", text)


def _ranges(target: SheetRange, row: int, cells: Mapping[int, _Cell]) -> Iterable[dict[str, Any]]:
    """One ValueRange per run of adjacent columns, so no other cell is ever in a range; ``row``
    and the columns count from the range's first cell."""
    row += target.first_row
    for _, run in groupby(enumerate(sorted(cells)), key=lambda pair: pair[1] - pair[0]):
        cols = [col for _, col in run]
        a1 = f"{column_letters(target.first_col + cols[0])}{row}"
        if len(cols) > 1:
            a1 += f":{column_letters(target.first_col + cols[-1])}{row}"
        yield {"range": target.cells(a1), "values": [[cells[c].send for c in cols]]}


def _text(value: object) -> str:
    """A cell as text, the way it compares: 7.0 -> '7', None -> ''."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip() if isinstance(value, str) else str(value)


def _same(current: object, desired: object) -> bool:
    """Whether a cell read as ``current`` already holds ``desired``."""
    if isinstance(desired, dt.date):
        try:
            return parse_date(current) == desired
        except DateParseError:
            return False
    if isinstance(desired, int) and not isinstance(desired, bool):
        try:
            return Decimal(_text(current)) == desired
        except InvalidOperation:
            return False
    return _text(current) == _text(desired)
