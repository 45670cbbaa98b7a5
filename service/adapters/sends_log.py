"""``logs/sends.csv``: one line per created draft (timestamp, invoice_id, stage, email).

Several workers may append at once. Each line goes out in a single ``write`` on an
``O_APPEND`` descriptor, which a local POSIX filesystem applies whole at the end of the file
(not so on NFS). The header is written only by whoever creates the file, and it is in the file
before anyone else can append: the file is born complete through ``os.link`` of a temp file.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import tempfile
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

HEADER = ("timestamp", "invoice_id", "stage", "email")
# A cell starting with one of these is run as a formula when the log is opened in a
# spreadsheet (OWASP "CSV injection"); invoice ids and addresses come from the sheet.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_line(cells: Sequence[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(
        "'" + cell if cell.startswith(_FORMULA_START) else cell for cell in cells
    )
    return buffer.getvalue().encode("utf-8")


class SendsLog:
    """Appends a line to the sends log for every draft created."""

    def __init__(self, path: str | os.PathLike[str] = "logs/sends.csv") -> None:
        self.path = Path(path)

    def append(
        self,
        invoice_id: str,
        stage: int,
        email: str | Sequence[str],
        *,
        timestamp: dt.datetime | None = None,
    ) -> None:
        """Record one created draft; several addresses are joined with ``;``."""
        when = timestamp or dt.datetime.now(dt.UTC)
        if when.tzinfo is None:
            raise ValueError("timestamp must be timezone-aware")
        when = when.astimezone(dt.UTC)  # one zone in the file, whatever the workers' zones
        addresses = email if isinstance(email, str) else ";".join(email)
        line = _csv_line([when.isoformat(timespec="seconds"), invoice_id, str(stage), addresses])
        self._ensure_file()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            written = os.write(fd, line)
            if written != len(line):  # a full disk; never leave half a line unexplained
                raise OSError(f"short write to {self.path}: {written} of {len(line)} bytes")
        finally:
            os.close(fd)

    def _ensure_file(self) -> None:
        if self.path.exists():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".sends.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(_csv_line(HEADER))
            os.chmod(tmp, 0o644)
            try:
                os.link(tmp, self.path)  # refused if the name exists: exactly one creator
            except FileExistsError:
                pass  # another worker created it first
            except OSError:
                # A filesystem without hard links: exclusive create, header in one write.
                with suppress(FileExistsError), open(self.path, "xb") as out:
                    out.write(_csv_line(HEADER))
        finally:
            Path(tmp).unlink(missing_ok=True)
