"""The embedded default invoice source: a local CSV file, edited in place cell by cell.

A write-back changes only the output cells of the rows whose values changed and keeps every
other byte of the bookkeeper's file (quoting, line endings, BOM, column and row order). The
stdlib ``csv`` module cannot (its reader drops raw text, its writer re-quotes and normalises
line endings), so this module tokenises the text itself and replaces only the changed fields.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import re
import stat
import tempfile
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from functools import cache, partial
from pathlib import Path
from typing import NamedTuple

from service.adapters.files import sync_directory
from service.domain.invoice import INPUT_FIELDS, OUTPUT_FIELDS, header_columns, normalize_header
from service.ports import SheetSnapshot, SourceRow, WriteBack

_UTF8_BOM = b"\xef\xbb\xbf"
_INPUT_KEYS = frozenset(normalize_header(name) for name in INPUT_FIELDS)
_OUTPUT_KEYS = frozenset(normalize_header(name) for name in OUTPUT_FIELDS)


class CsvSourceError(Exception):
    """The file cannot be read as CSV, or cannot be written back safely."""


class FileChangedError(CsvSourceError):
    """The file changed on disk since it was read; nothing was written: read it again."""


class FileInUseError(CsvSourceError):
    """A spreadsheet application has the file open; its next save would undo the write-back."""


class _Record(NamedTuple):
    raw: list[str]  # each field's text as in the file, quotes included
    values: list[str]  # each field's value, as the csv module reads it
    end: str  # the line terminator: '\r\n', '\n', '\r', or '' at the end of the file

    def value(self, col: int | None) -> str:
        return self.values[col] if col is not None and col < len(self.values) else ""


# Excel writes ';' where a comma is the decimal separator (most of Europe); some tools tabs.
_DELIMITERS = ",;\t"


@cache
def _field(delimiter: str) -> re.Pattern[str]:
    """A quoted field: '"', '""' pairs or non-quotes (unrolled: no bad backtracking), the closing
    quote (absent only at the end of the file), then stray text up to the delimiter, kept as the
    csv module keeps it ('"a"b' reads as 'ab'). Else a bare field, its quotes literal. A line
    ends at '\r\n', '\n' or a lone '\r' (old Mac files)."""
    d = re.escape(delimiter)
    return re.compile(
        rf'(?:"(?P<inner>[^"]*(?:""[^"]*)*)"?(?P<tail>[^{d}\r\n]*)|(?P<bare>[^{d}\r\n]*))'
        rf"(?P<sep>{d}|\r\n|\r|\n|\Z)"
    )


def _delimiter(text: str) -> str:
    """The one of _DELIMITERS the header line holds most of; a comma when it holds none."""
    header = re.split(r"\r|\n", text, maxsplit=1)[0]
    return max(_DELIMITERS, key=header.count)  # on a tie, the first: the comma


def _tokenize(text: str, delimiter: str = ",") -> list[_Record]:  # RFC 4180, leniently
    field = _field(delimiter)
    records: list[_Record] = []
    raw: list[str] = []
    values: list[str] = []
    pos = 0
    while pos < len(text) or raw:
        match = field.match(text, pos)
        assert match is not None  # every field ends at the delimiter, a line end or the end
        bare = match["bare"]
        raw.append(text[pos : match.start("sep")])
        values.append(
            bare if bare is not None else match["inner"].replace('""', '"') + match["tail"]
        )
        pos = match.end()
        if match["sep"] != delimiter:
            records.append(_Record(raw, values, match["sep"]))
            raw, values = [], []
    return records


def _render(value: str, *, quote: bool, delimiter: str) -> str:
    """A field's raw text: quoted when asked (to match its neighbours) or when it must be."""
    if quote or any(c in value for c in delimiter + '"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def _output_cells(update: WriteBack) -> dict[str, str]:
    status = update.reminder_status
    cells = {
        "last_stage_sent": "" if update.last_stage_sent is None else str(update.last_stage_sent),
        "last_sent_at": "" if update.last_sent_at is None else update.last_sent_at.isoformat(),
        "reminder_status": f"{status} — {update.reminder_url}" if update.reminder_url else status,
    }
    for name, value in update.extra.items():
        if normalize_header(name) in _INPUT_KEYS:
            raise ValueError(f"write-back extra {name!r} would overwrite an input column")
        cells[name] = value
    return cells


def _columns(names: Iterable[str]) -> dict[str, int]:
    """Column number by name; of duplicated names the first counts, blank names none."""
    columns: dict[str, int] = {}
    for number, name in enumerate(names):
        if name.strip():
            columns.setdefault(name, number)
    return columns


def _splice(
    text: str,
    records: Sequence[_Record],
    updates: Sequence[WriteBack],
    column_map: Mapping[str, str],
    delimiter: str,
) -> tuple[str, int]:
    """The new text with only changed output cells edited, and the number of rows changed."""
    if not records:
        raise CsvSourceError("the file has no header row")
    columns = header_columns(records[0].values, column_map)
    changes: dict[int, dict[str, str]] = {}  # row -> normalised column -> changed value
    names: dict[str, str] = {}  # normalised -> the name to give a column we must append
    for update in updates:
        if not 2 <= update.row <= len(records):
            raise ValueError(f"row {update.row} is not a data row (the file has {len(records)})")
        record = records[update.row - 1]
        cells = changes.setdefault(update.row, {})
        for name, value in _output_cells(update).items():
            key = normalize_header(name)
            cells.pop(key, None)  # the last update of a cell wins, even one that changes nothing
            if value != record.value(columns.get(key)):  # a missing column reads ""
                cells[key] = value
                names.setdefault(key, name)
    changes = {row: cells for row, cells in changes.items() if cells}
    if not changes:
        return text, 0
    # New columns go after the widest record, so cells beyond the header stay unnamed.
    width = max(len(r.values) for r in records)
    appended = [key for key in names if key not in columns]
    columns.update({key: width + offset for offset, key in enumerate(appended)})
    if appended:
        _put(records[0], {columns[key]: names[key] for key in appended}, delimiter)
    for row, cells in changes.items():
        _put(records[row - 1], {columns[key]: value for key, value in cells.items()}, delimiter)
    return "".join(delimiter.join(r.raw) + r.end for r in records), len(changes)


def _put(record: _Record, cells: Mapping[int, str], delimiter: str) -> None:
    """Put ``cells`` (by column) into ``record``'s raw text; its other fields keep their bytes."""
    # A file written with every field quoted gets quoted new fields too.
    quote = all(r.startswith('"') for r in record.raw) and any(record.values)
    padding = _render("", quote=quote, delimiter=delimiter)
    record.raw.extend([padding] * (max(cells) + 1 - len(record.raw)))
    for col, value in cells.items():  # every field, padding too, keeps its own quoting
        record.raw[col] = _render(value, quote=record.raw[col].startswith('"'), delimiter=delimiter)


class CsvFileSource:
    """An InvoiceSource over a local CSV file (``INVOICES_FILE``)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        encoding: str = "utf-8",
        column_map: Mapping[str, str] | None = None,
    ) -> None:
        self.path = Path(os.path.abspath(path))
        self._column_map = column_map or {}  # our field -> the file's own header (COLUMN_MAP)
        # The ledger keys drafts by scope: the file's name, not its path, so moving or remounting
        # it does not make every invoice new (`file:<absolute path>` until 2026-12; migration 0005).
        self.scope = f"file:{self.path.name}"
        codec = codecs.lookup(encoding).name
        # A BOM is bytes, never the codec's: _parse strips it, write_back puts it back exactly.
        self._encoding = "utf-8" if codec in ("utf-8", "utf-8-sig") else codec
        # sha256 of the bytes each live snapshot was read from, by id(snapshot): snapshots are
        # frozen port types with no room for it, and a finalizer drops the entry with them.
        self._digests: dict[int, bytes] = {}
        self._write_lock = threading.Lock()  # two threads of one process queue, not collide

    def read(self) -> SheetSnapshot:
        """One read of every row; values are the cells' text exactly as in the file."""
        data = self.path.read_bytes()
        _, records, _ = self._parse(data)
        headers = tuple(records[0].values) if records else ()
        snapshot = SheetSnapshot(scope=self.scope, headers=headers, rows=_rows(records))
        self._remember(snapshot, data)
        return snapshot

    def write_back(self, snapshot: SheetSnapshot, updates: Sequence[WriteBack]) -> int:
        """Rewrite the file atomically with only the changed output cells; returns rows written."""
        if snapshot.scope != self.scope:
            raise ValueError(f"snapshot of {snapshot.scope!r} given to {self.scope!r}")
        if not updates:
            return 0
        with self._write_lock:
            # Write through a symlink to its target: os.replace on the link would replace the link.
            real = Path(os.path.realpath(self.path))
            data = real.read_bytes()
            text, records, delimiter = self._parse(data)
            digest = self._digests.get(id(snapshot))
            if digest is None:
                # A snapshot this object did not read (another request, another process): the
                # rows it describes must still be there, unchanged outside the cells written.
                ours = partial(_unwritten, updates=updates, column_map=self._column_map)
                if ours(snapshot.rows) != ours(_rows(records)):
                    raise FileChangedError(f"{self.path} differs from the snapshot; read it again")
            elif digest != hashlib.sha256(data).digest():
                raise FileChangedError(f"{self.path} changed since it was read; read it again")
            new_text, written = _splice(text, records, updates, self._column_map, delimiter)
            if not written:
                return 0
            # The owner files LibreOffice and Excel leave beside a file they have open.
            for name in (f".~lock.{real.name}#", f"~${real.name}"):
                if (real.parent / name).exists():
                    raise FileInUseError(
                        f"{self.path} is open in a spreadsheet application ({name} exists): "
                        "close it (or delete a stale lock file) and run again"
                    )
            bom = _UTF8_BOM if self._encoding == "utf-8" and data.startswith(_UTF8_BOM) else b""
            new_data = bom + new_text.encode(self._encoding)
            _replace_atomically(real, new_data, expected=data)
            # Our own edit is not a concurrent one: the snapshot may be written back to again.
            self._remember(snapshot, new_data)
            return written

    def _parse(self, data: bytes) -> tuple[str, list[_Record], str]:
        if self._encoding == "utf-8":
            data = data.removeprefix(_UTF8_BOM)
        try:
            text = data.decode(self._encoding)
        except UnicodeDecodeError as exc:
            raise CsvSourceError(
                f"{self.path} is not valid {self._encoding} at byte {exc.start}: "
                "set the file's encoding"
            ) from None
        delimiter = _delimiter(text)
        return text, _tokenize(text, delimiter), delimiter

    def _remember(self, snapshot: SheetSnapshot, data: bytes) -> None:
        key = id(snapshot)
        if key not in self._digests:
            weakref.finalize(snapshot, self._digests.pop, key, None)
        self._digests[key] = hashlib.sha256(data).digest()


def _unwritten(
    rows: Sequence[SourceRow], *, updates: Sequence[WriteBack], column_map: Mapping[str, str]
) -> list[tuple[int, dict[str, object]]]:
    """Each row without its output cells and the cells ``updates`` would write."""
    written = _OUTPUT_KEYS | {normalize_header(n) for u in updates for n in _output_cells(u)}
    # A field COLUMN_MAP names is written under the file's own header.
    written |= {
        normalize_header(h) for f, h in column_map.items() if normalize_header(f) in written
    }
    return [
        (r.row, {h: v for h, v in r.values.items() if normalize_header(h) not in written})
        for r in rows
    ]


def _rows(records: Sequence[_Record]) -> tuple[SourceRow, ...]:
    columns = _columns(records[0].values) if records else {}
    return tuple(
        SourceRow(row=number, values={h: record.value(c) for h, c in columns.items()})
        for number, record in enumerate(records[1:], start=2)
        # An empty line is an empty sheet row: it keeps its number but is no invoice.
        if any(record.values)
    )


def _replace_atomically(path: Path, data: bytes, *, expected: bytes) -> None:
    """Swap ``data`` in for ``path`` via a synced temp file, unless ``path`` changed meanwhile."""
    mode = stat.S_IMODE(path.stat().st_mode)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)  # mkstemp makes 0600; the bookkeeper's file keeps its permissions
        # Last look before the switch: shrinks the window for a concurrent save to microseconds.
        if path.read_bytes() != expected:
            raise FileChangedError(f"{path} changed while it was being written; read it again")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    sync_directory(path.parent)
