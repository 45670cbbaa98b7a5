"""The embedded default invoice source: a local CSV file, edited in place cell by cell.

A bookkeeper's file is theirs: a write-back changes only the output cells of the rows whose
values changed and keeps every other byte (quoting, line endings, BOM, column and row order).
The stdlib ``csv`` module cannot promise that (it re-quotes and normalises line endings), so
this module tokenises the text itself and keeps the span of every field; edits splice new
field text into the original text.
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
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from service.domain.invoice import INPUT_FIELDS, OUTPUT_FIELDS, normalize_header
from service.ports import SheetSnapshot, SourceRow, WriteBack

_UTF8_BOM = b"\xef\xbb\xbf"
_INPUT_KEYS = frozenset(normalize_header(name) for name in INPUT_FIELDS)


class CsvSourceError(Exception):
    """The file cannot be read as CSV, or cannot be written back safely."""


class FileChangedError(CsvSourceError):
    """The file changed on disk since it was read; nothing was written: read it again."""


class FileInUseError(CsvSourceError):
    """A spreadsheet application has the file open; its next save would undo the write-back."""


@dataclass(frozen=True, slots=True)
class _Field:
    start: int  # span of the field's raw text (quotes included) in the decoded text
    end: int
    value: str
    quoted: bool


@dataclass(frozen=True, slots=True)
class _Record:
    fields: tuple[_Field, ...]
    end: int  # where the content ends: its line terminator (or the end of the file) starts here

    @property
    def blank(self) -> bool:
        return all(not f.value for f in self.fields)


@dataclass(frozen=True, slots=True)
class _Parsed:
    prefix: bytes  # the BOM, kept byte for byte
    text: str
    records: tuple[_Record, ...]

    @property
    def headers(self) -> tuple[str, ...]:
        return tuple(f.value for f in self.records[0].fields) if self.records else ()


@lru_cache(maxsize=8)
def _field_pattern(delimiter: str) -> re.Pattern[str]:
    d = re.escape(delimiter)
    # A quoted field: '"', pairs of '""' or non-quotes (unrolled so it cannot backtrack badly),
    # the closing quote (absent only at the end of the file), then any stray text up to the
    # next delimiter, kept as the csv module keeps it ('"a"b' reads as 'ab'). Anything else is
    # a bare field up to the delimiter or the line end; a quote inside it is literal.
    return re.compile(
        rf'"(?P<inner>[^"]*(?:""[^"]*)*)"?(?P<tail>[^{d}\r\n]*)|(?P<bare>[^{d}\r\n]*)'
    )


def _tokenize(text: str, delimiter: str) -> tuple[_Record, ...]:
    """Split CSV text into records of fields with their spans (RFC 4180, leniently)."""
    pattern = _field_pattern(delimiter)
    records: list[_Record] = []
    pos, size = 0, len(text)
    while pos < size:
        fields: list[_Field] = []
        while True:
            match = pattern.match(text, pos)
            assert match is not None  # the bare alternative matches the empty string
            bare = match.group("bare")
            if bare is not None:
                fields.append(_Field(pos, match.end(), bare, False))
            else:
                value = match.group("inner").replace('""', '"') + match.group("tail")
                fields.append(_Field(pos, match.end(), value, True))
            pos = match.end()
            if pos < size and text[pos] == delimiter:
                pos += 1
                continue
            break
        records.append(_Record(tuple(fields), pos))
        # The field stopped at the end of the file, '\r\n', '\n' or a lone '\r' (old Mac files).
        pos += 2 if text.startswith("\r\n", pos) else 1
    return tuple(records)


def _render(value: str, delimiter: str, *, quote: bool) -> str:
    """A field's raw text: quoted when asked (to match its neighbours) or when it must be."""
    if quote or any(c in value for c in (delimiter, '"', "\r", "\n")):
        return '"' + value.replace('"', '""') + '"'
    return value


def _output_cells(update: WriteBack) -> dict[str, str]:
    cells = {
        "last_stage_sent": "" if update.last_stage_sent is None else str(update.last_stage_sent),
        "last_sent_at": "" if update.last_sent_at is None else update.last_sent_at.isoformat(),
        "reminder_status": (
            f"{update.reminder_status} — {update.reminder_url}"
            if update.reminder_url
            else update.reminder_status
        ),
    }
    for name, value in update.extra.items():
        if normalize_header(name) in _INPUT_KEYS:
            # Only output cells are ever written: an extra that names an input column is a bug.
            raise ValueError(f"write-back extra {name!r} would overwrite an input column")
        cells[name] = value
    return cells


def _splice(parsed: _Parsed, updates: Sequence[WriteBack], delimiter: str) -> tuple[str, int]:
    """The new text with only changed output cells edited, and the number of rows changed."""
    records = parsed.records
    if not records:
        raise CsvSourceError("the file has no header row")
    columns: dict[str, int] = {}
    for number, header in enumerate(parsed.headers):
        key = normalize_header(header)
        if key:
            columns.setdefault(key, number)  # a duplicated header: the first one is the column

    # Pass 1: what changes, by row and by normalised column name (missing columns read "").
    changes: dict[int, dict[str, str]] = {}
    names: dict[str, str] = {}  # normalised -> the name to give a column we must append
    for update in updates:
        if not 2 <= update.row <= len(records):
            raise ValueError(f"row {update.row} is not a data row (the file has {len(records)})")
        fields = records[update.row - 1].fields
        for name, value in _output_cells(update).items():
            key = normalize_header(name)
            col = columns.get(key)
            current = fields[col].value if col is not None and col < len(fields) else ""
            row_changes = changes.setdefault(update.row, {})
            if value != current:
                row_changes[key] = value
                names.setdefault(key, name)
            else:
                row_changes.pop(key, None)  # a later update for the row restored the value
    changes = {row: cells for row, cells in changes.items() if cells}
    if not changes:
        return parsed.text, 0

    # New columns go after the widest record, so cells beyond the header stay unnamed.
    width = max(len(r.fields) for r in records)
    appended = [key for key in names if key not in columns]
    for offset, key in enumerate(appended):
        columns[key] = width + offset
    edits: list[tuple[int, int, str]] = []  # (start, end, new raw text), spans of the old text
    if appended:
        new_headers = {columns[key]: names[key] for key in appended}
        edits.append(_extend(records[0], new_headers, delimiter))
    for row, row_changes in changes.items():
        record = records[row - 1]
        beyond: dict[int, str] = {}
        for key, value in row_changes.items():
            col = columns[key]
            if col < len(record.fields):
                old = record.fields[col]
                edits.append((old.start, old.end, _render(value, delimiter, quote=old.quoted)))
            else:
                beyond[col] = value
        if beyond:
            edits.append(_extend(record, beyond, delimiter))

    edits.sort(key=lambda edit: edit[0])
    pieces: list[str] = []
    pos = 0
    for start, end, raw in edits:
        pieces.append(parsed.text[pos:start])
        pieces.append(raw)
        pos = end
    pieces.append(parsed.text[pos:])
    return "".join(pieces), len(changes)


def _extend(record: _Record, cells: Mapping[int, str], delimiter: str) -> tuple[int, int, str]:
    """An insertion at the end of ``record`` adding cells up to the highest column given."""
    # A file written with every field quoted gets quoted new fields too.
    quote = all(f.quoted for f in record.fields) and not record.blank
    last = max(cells)
    raw = "".join(
        delimiter + _render(cells.get(col, ""), delimiter, quote=quote)
        for col in range(len(record.fields), last + 1)
    )
    return record.end, record.end, raw


class CsvFileSource:
    """An InvoiceSource over a local CSV file (``INVOICES_FILE``)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        encoding: str = "utf-8",
        scope: str | None = None,
        delimiter: str = ",",
    ) -> None:
        if len(delimiter) != 1 or delimiter in '"\r\n':
            raise ValueError(f"{delimiter!r} cannot be a CSV delimiter")
        self.path = Path(os.path.abspath(path))
        self.scope = scope if scope is not None else f"file:{self.path}"
        codec = codecs.lookup(encoding).name
        # UTF-8 with or without a BOM: the BOM is handled as bytes (see _parse), never by the codec.
        self._encoding = "utf-8" if codec in ("utf-8", "utf-8-sig") else codec
        self._delimiter = delimiter
        # sha256 of the bytes each live snapshot was read from, by id(snapshot): snapshots are
        # frozen port types with no room for it, and a finalizer drops the entry with them.
        self._digests: dict[int, bytes] = {}
        self._write_lock = threading.Lock()  # two threads of one process queue, not collide

    def read(self) -> SheetSnapshot:
        """One read of every row; values are the cells' text exactly as in the file."""
        data = self._real_path().read_bytes()
        parsed = self._parse(data)
        snapshot = SheetSnapshot(scope=self.scope, headers=parsed.headers, rows=self._rows(parsed))
        self._remember(snapshot, data)
        return snapshot

    def write_back(self, snapshot: SheetSnapshot, updates: Sequence[WriteBack]) -> int:
        """Rewrite the file atomically with only the changed output cells; returns rows written."""
        if snapshot.scope != self.scope:
            raise ValueError(f"snapshot of {snapshot.scope!r} given to {self.scope!r}")
        if not updates:
            return 0
        with self._write_lock:
            return self._write_back(snapshot, updates)

    def _write_back(self, snapshot: SheetSnapshot, updates: Sequence[WriteBack]) -> int:
        real = self._real_path()
        data = real.read_bytes()
        parsed = self._parse(data)
        self._check_unchanged(snapshot, data, parsed, updates)
        text, written = _splice(parsed, updates, self._delimiter)
        if not written:
            return 0
        self._check_not_open(real)
        new_data = parsed.prefix + text.encode(self._encoding)
        _replace_atomically(real, new_data, expected=data)
        # Our own edit is not a concurrent one: the snapshot may be written back to again.
        self._remember(snapshot, new_data)
        return written

    # -- internals ----------------------------------------------------------------------------
    def _real_path(self) -> Path:
        # Write through a symlink to its target: os.replace on the link would replace the link.
        return Path(os.path.realpath(self.path))

    def _parse(self, data: bytes) -> _Parsed:
        prefix = b""
        if self._encoding == "utf-8" and data.startswith(_UTF8_BOM):
            # Strip the BOM ourselves and keep it, so the write gives back exactly what was read.
            prefix, data = _UTF8_BOM, data[len(_UTF8_BOM) :]
        try:
            text = data.decode(self._encoding)
        except UnicodeDecodeError as exc:
            raise CsvSourceError(
                f"{self.path} is not valid {self._encoding} at byte {exc.start}: "
                "set the file's encoding"
            ) from None
        return _Parsed(prefix, text, _tokenize(text, self._delimiter))

    @staticmethod
    def _rows(parsed: _Parsed) -> tuple[SourceRow, ...]:
        columns: dict[str, int] = {}
        for number, header in enumerate(parsed.headers):
            if header.strip():
                columns.setdefault(header, number)
        rows = []
        for number, record in enumerate(parsed.records[1:], start=2):
            if record.blank:
                continue  # an empty line is an empty sheet row: it keeps its number, not a row
            fields = record.fields
            values = {h: fields[c].value if c < len(fields) else "" for h, c in columns.items()}
            rows.append(SourceRow(row=number, values=values))
        return tuple(rows)

    def _remember(self, snapshot: SheetSnapshot, data: bytes) -> None:
        key = id(snapshot)
        if key not in self._digests:
            weakref.finalize(snapshot, self._digests.pop, key, None)
        self._digests[key] = hashlib.sha256(data).digest()

    def _check_unchanged(
        self,
        snapshot: SheetSnapshot,
        data: bytes,
        parsed: _Parsed,
        updates: Sequence[WriteBack],
    ) -> None:
        digest = self._digests.get(id(snapshot))
        if digest is not None:
            if hashlib.sha256(data).digest() != digest:
                raise FileChangedError(f"{self.path} changed since it was read; read it again")
            return
        # A snapshot this object did not read (another request, another process): the rows it
        # describes must still be there, unchanged outside the cells being written.
        written = {normalize_header(n) for u in updates for n in _output_cells(u)}
        written |= {normalize_header(n) for n in OUTPUT_FIELDS}

        def visible(rows: Sequence[SourceRow]) -> list[tuple[int, dict[str, object]]]:
            return [
                (r.row, {h: v for h, v in r.values.items() if normalize_header(h) not in written})
                for r in rows
            ]

        if visible(snapshot.rows) != visible(self._rows(parsed)):
            raise FileChangedError(f"{self.path} differs from the snapshot; read it again")

    def _check_not_open(self, real: Path) -> None:
        # LibreOffice and Excel leave these owner files beside a file they have open; writing
        # now would be undone by the bookkeeper's next save.
        for name in (f".~lock.{real.name}#", f"~${real.name}"):
            if (real.parent / name).exists():
                raise FileInUseError(
                    f"{self.path} is open in a spreadsheet application ({name} exists): close "
                    "it (or delete a stale lock file) and run again"
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
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; some platforms cannot open a directory, which is fine.
    with suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
