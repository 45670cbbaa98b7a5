"""The Sheets emulator with ``values.append`` (for the Log tab), until the shared one has it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote

from werkzeug.wrappers import Request, Response

from tests.emulators.server import serve_wsgi
from tests.emulators.sheets import SheetsEmulator, raw_cell

_APPEND = re.compile(r"^/v4/spreadsheets/([^/]+)/values/([^/]+):append$")


class SheetsWithAppend(SheetsEmulator):
    """``POST …/values/{range}:append`` writes its rows under the tab's last non-empty row."""

    def _route(self, http_method: str, path: str) -> tuple[str, str, str]:
        match = _APPEND.match(path)
        if match and http_method == "POST":
            return "values.append", unquote(match[1]), unquote(match[2])
        return super()._route(http_method, path)

    def _dispatch(
        self, method: str, book_id: str, range_text: str, request: Request, body: Any
    ) -> Response:
        if method != "values.append":
            return super()._dispatch(method, book_id, range_text, request, body)
        assert request.args.get("valueInputOption") == "RAW", request.args
        sheet = self._parse_range(self._book(book_id), range_text).sheet
        first = max((r for r, _ in sheet.cells), default=-1) + 1
        rows = (request.get_json() or {}).get("values") or []
        for r, row in enumerate(rows):
            for c, value in enumerate(row):
                sheet.put(first + r, c, raw_cell(value))
        return Response('{"updates": {}}', mimetype="application/json")


@contextmanager
def running_sheets_with_append(**options: Any) -> Iterator[tuple[SheetsWithAppend, str]]:
    """Serve a fresh SheetsWithAppend on 127.0.0.1; yield (emulator, base URL)."""
    emulator = SheetsWithAppend(**options)
    with serve_wsgi(emulator) as base_url:
        yield emulator, base_url
