"""The sends log: one CSV line per created draft, one header, safe with several writers."""

from __future__ import annotations

import csv
import datetime as dt
import multiprocessing
from pathlib import Path

from service.adapters.sends_log import HEADER, SendsLog

WHEN = dt.datetime(2025, 1, 22, 9, 30, tzinfo=dt.UTC)


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def test_first_append_creates_the_file_with_its_header_and_directory(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "sends.csv"
    SendsLog(path).append("INV-1", 7, "a@example.com", timestamp=WHEN)
    assert path.read_bytes() == (
        b"timestamp,invoice_id,stage,email\n2025-01-22T09:30:00+00:00,INV-1,7,a@example.com\n"
    )


def test_later_appends_add_lines_without_another_header(tmp_path: Path) -> None:
    log = SendsLog(tmp_path / "sends.csv")
    log.append("INV-1", 7, "a@example.com", timestamp=WHEN)
    log.append("INV-2", 14, ["b@example.com", "c@example.com"], timestamp=WHEN)
    assert _rows(log.path) == [
        list(HEADER),
        ["2025-01-22T09:30:00+00:00", "INV-1", "7", "a@example.com"],
        ["2025-01-22T09:30:00+00:00", "INV-2", "14", "b@example.com;c@example.com"],
    ]


def test_timestamps_are_written_in_utc(tmp_path: Path) -> None:
    log = SendsLog(tmp_path / "sends.csv")
    auckland = dt.timezone(dt.timedelta(hours=13))
    log.append(
        "INV-1", 7, "a@example.com", timestamp=dt.datetime(2025, 1, 23, 8, 0, tzinfo=auckland)
    )
    assert _rows(log.path)[1][0] == "2025-01-22T19:00:00+00:00"


def test_cells_that_a_spreadsheet_would_run_as_formulas_are_defused(tmp_path: Path) -> None:
    log = SendsLog(tmp_path / "sends.csv")
    log.append('=HYPERLINK("http://evil")', 7, "a@example.com", timestamp=WHEN)
    assert _rows(log.path)[1][1] == '\'=HYPERLINK("http://evil")'


def test_an_invoice_id_with_commas_and_newlines_stays_one_record(tmp_path: Path) -> None:
    log = SendsLog(tmp_path / "sends.csv")
    log.append("INV,1\nsecond line", 7, "a@example.com", timestamp=WHEN)
    assert _rows(log.path)[1][1] == "INV,1\nsecond line"


def _worker(path: str, worker: int, count: int) -> None:
    log = SendsLog(path)
    for number in range(count):
        log.append(f"W{worker}-{number}", 7, f"w{worker}@example.com", timestamp=WHEN)


def test_several_processes_appending_at_once_give_whole_lines_and_one_header(
    tmp_path: Path,
) -> None:
    context = multiprocessing.get_context("fork")
    for attempt in range(3):  # each round races on creating a fresh file
        path = tmp_path / f"round{attempt}" / "sends.csv"
        workers = [context.Process(target=_worker, args=(str(path), w, 200)) for w in range(6)]
        for process in workers:
            process.start()
        for process in workers:
            process.join(timeout=15)
            assert process.exitcode == 0
        rows = _rows(path)
        assert rows[0] == list(HEADER)
        assert list(HEADER) not in rows[1:]
        assert sorted(r[1] for r in rows[1:]) == sorted(
            f"W{w}-{n}" for w in range(6) for n in range(200)
        )
        assert all(len(r) == 4 for r in rows)
        assert sorted(p.name for p in path.parent.iterdir()) == ["sends.csv"]
