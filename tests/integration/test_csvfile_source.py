"""CsvFileSource against real files on disk: shapes it reads, bytes it keeps, writes it refuses."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.adapters import csvfile
from service.adapters.csvfile import CsvFileSource, FileChangedError, FileInUseError
from service.bootstrap import build_services
from service.config import PROJECT_ROOT, Settings
from service.domain.invoice import normalize_header
from service.ports import WriteBack
from service.usecases.run import run_sheet
from tests.conftest import FIXED_NOW

DAY = dt.date(2025, 1, 22)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _drafted(row: int, stage: int = 7, **extra: str) -> WriteBack:
    return WriteBack(
        row=row,
        last_stage_sent=stage,
        last_sent_at=DAY,
        reminder_status=f"drafted stage {stage}",
        extra=extra,
    )


# ---------------------------------------------------------------------------------------------
# read()
# ---------------------------------------------------------------------------------------------
def test_read_gives_sheet_row_numbers_and_text_exactly_as_in_the_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "inv.csv",
        b"invoice_id,amount,due_date\r\n0001, 1,234.50 ,2025-01-15\r\n0002,10,1/2/2025\r\n",
    )
    snapshot = CsvFileSource(path).read()
    assert snapshot.scope == "file:inv.csv"
    assert snapshot.headers == ("invoice_id", "amount", "due_date")
    assert [r.row for r in snapshot.rows] == [2, 3]
    # Unquoted commas split cells: " 1" and "234.50 " are two cells, kept with their spaces.
    assert snapshot.rows[0].values == {"invoice_id": "0001", "amount": " 1", "due_date": "234.50 "}
    assert snapshot.rows[1].values == {"invoice_id": "0002", "amount": "10", "due_date": "1/2/2025"}


def test_read_strips_a_bom_and_unquotes_commas_newlines_and_quotes(tmp_path: Path) -> None:
    text = 'id,notes\n1,"a, b"\n2,"line one\r\nline two"\n3,"she said ""pay"""\n'
    path = _write(tmp_path / "inv.csv", b"\xef\xbb\xbf" + text.encode())
    snapshot = CsvFileSource(path).read()
    assert snapshot.headers == ("id", "notes")
    assert [(r.row, r.values["notes"]) for r in snapshot.rows] == [
        (2, "a, b"),
        (3, "line one\r\nline two"),
        (4, 'she said "pay"'),
    ]


def test_read_pads_short_rows_ignores_unnamed_cells_and_skips_blank_rows(tmp_path: Path) -> None:
    path = _write(tmp_path / "inv.csv", b"id,name,amount\n1,Acme\n\n,,\n2,Beta,5,surplus\n3")
    snapshot = CsvFileSource(path).read()
    assert [(r.row, dict(r.values)) for r in snapshot.rows] == [
        (2, {"id": "1", "name": "Acme", "amount": ""}),
        (5, {"id": "2", "name": "Beta", "amount": "5"}),  # rows 3 and 4 are blank
        (6, {"id": "3", "name": "", "amount": ""}),
    ]


def test_read_matches_the_csv_module_on_well_formed_files(tmp_path: Path) -> None:
    rows = [["id", "note"], ["1", 'x,"y"\nz'], ["2", ""], ["3", "ü€😀"]]
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    path = _write(tmp_path / "inv.csv", buffer.getvalue().encode())
    snapshot = CsvFileSource(path).read()
    assert [[r.values["id"], r.values["note"]] for r in snapshot.rows] == rows[1:]


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet='a,"\r\n ü', max_size=24))
def test_cells_are_split_as_the_csv_module_splits_them_even_when_malformed(text: str) -> None:
    try:
        expected = [row or [""] for row in csv.reader(io.StringIO(text, newline=""))]
    except csv.Error:
        return  # text the csv module refuses outright (e.g. a NUL byte); nothing to compare
    assert [r.values for r in csvfile._tokenize(text)] == expected


def test_a_semicolon_file_from_a_european_excel_reads_and_writes_back_as_it_is(
    tmp_path: Path,
) -> None:
    original = b'invoice_id;client_name;notes\r\n1;"Smith; Sons";x\r\n2;Acme;\r\n'
    path = _write(tmp_path / "inv.csv", original)
    source = CsvFileSource(path)
    snapshot = source.read()
    assert snapshot.headers == ("invoice_id", "client_name", "notes")
    assert snapshot.rows[0].values == {
        "invoice_id": "1",
        "client_name": "Smith; Sons",
        "notes": "x",
    }
    linked = WriteBack(3, 7, DAY, "drafted stage 7", reminder_url="https://x.test/a;b")
    assert source.write_back(snapshot, [linked]) == 1
    assert path.read_bytes() == (
        b"invoice_id;client_name;notes;last_stage_sent;last_sent_at;reminder_status\r\n"
        b'1;"Smith; Sons";x\r\n'
        b'2;Acme;;7;2025-01-22;"drafted stage 7 \xe2\x80\x94 https://x.test/a;b"\r\n'
    )


def test_a_tab_separated_file_reads_into_columns(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "inv.tsv", b"invoice_id\tclient_name\tamount\n1\tSmith, Sons\t1,250.00\n"
    )
    [row] = CsvFileSource(path).read().rows
    assert row.values == {"invoice_id": "1", "client_name": "Smith, Sons", "amount": "1,250.00"}


@pytest.mark.parametrize(
    ("encoding", "data"),
    [
        ("utf-8-sig", b"\xef\xbb\xbfid,name\r\n1,Caf\xc3\xa9\r\n"),
        ("cp1252", b"id,name\r\n1,Caf\xe9 \x80\r\n"),
    ],
)
def test_other_encodings_read_and_write_back_in_their_own_bytes(
    tmp_path: Path, encoding: str, data: bytes
) -> None:
    path = _write(tmp_path / "inv.csv", data)
    source = CsvFileSource(path, encoding=encoding)
    snapshot = source.read()
    assert snapshot.rows[0].values["name"].startswith("Café")
    source.write_back(snapshot, [WriteBack(2, 7, DAY, "relancé")])
    after = path.read_bytes()
    assert after.startswith(data.split(b"\r\n")[0] + b",last_stage_sent")
    assert after.count(b"\xef\xbb\xbf") == data.count(b"\xef\xbb\xbf")
    assert CsvFileSource(path, encoding=encoding).read().rows[0].values["reminder_status"] == (
        "relancé"
    )


def test_a_file_in_another_encoding_is_a_clear_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "inv.csv", b"id,name\n1,Caf\xe9\n")
    with pytest.raises(csvfile.CsvSourceError, match="not valid utf-8 at byte 13"):
        CsvFileSource(path).read()


def test_an_empty_file_reads_as_no_headers_and_no_rows(tmp_path: Path) -> None:
    snapshot = CsvFileSource(_write(tmp_path / "inv.csv", b"")).read()
    assert snapshot.headers == ()
    assert snapshot.rows == ()


# ---------------------------------------------------------------------------------------------
# write_back()
# ---------------------------------------------------------------------------------------------
def test_write_back_changes_only_the_output_cells_of_changed_rows(tmp_path: Path) -> None:
    original = (
        b'"Invoice ID",Amount,Last Stage Sent,Last Sent At,Reminder Status,Extra\r\n'
        b'1,"1,000",,,,keep "me"\r\n'
        b"2,5,7,2025-01-15,drafted stage 7,x\r\n"
    )
    path = _write(tmp_path / "inv.csv", original)
    source = CsvFileSource(path)
    snapshot = source.read()
    written = source.write_back(
        snapshot,
        [
            _drafted(2),
            WriteBack(3, 7, dt.date(2025, 1, 15), "drafted stage 7"),  # unchanged
        ],
    )
    assert written == 1
    assert path.read_bytes() == (
        b'"Invoice ID",Amount,Last Stage Sent,Last Sent At,Reminder Status,Extra\r\n'
        b'1,"1,000",7,2025-01-22,drafted stage 7,keep "me"\r\n'
        b"2,5,7,2025-01-15,drafted stage 7,x\r\n"
    )


def test_output_columns_named_by_column_map_are_written_in_place(tmp_path: Path) -> None:
    path = _write(tmp_path / "inv.csv", b"Number,Amount,Stage Sent,Chased On,Chaser Note\n1,5,,,\n")
    own = {"last_stage_sent": "Stage Sent", "last_sent_at": "Chased On"}
    own["reminder_status"] = "Chaser Note"
    source = CsvFileSource(path, column_map={"invoice_id": "Number", **own})
    snapshot = source.read()
    assert source.write_back(snapshot, [_drafted(2)]) == 1
    drafted = b"Number,Amount,Stage Sent,Chased On,Chaser Note\n1,5,7,2025-01-22,drafted stage 7\n"
    assert path.read_bytes() == drafted  # no column of ours beside the file's own
    # Another process holding the same snapshot writes the next stage: only output cells moved.
    other = CsvFileSource(path, column_map=own)
    assert other.write_back(snapshot, [_drafted(2, stage=14)]) == 1
    assert path.read_bytes().endswith(b"\n1,5,14,2025-01-22,drafted stage 14\n")


def test_missing_output_columns_are_appended_after_the_widest_row(tmp_path: Path) -> None:
    path = _write(tmp_path / "inv.csv", b"id,amount\n1,5\n2,6,stray\n3,7")
    source = CsvFileSource(path)
    written = source.write_back(source.read(), [_drafted(2, payment_link="https://pay/1")])
    assert written == 1
    assert path.read_text() == (
        "id,amount,,last_stage_sent,last_sent_at,reminder_status,payment_link\n"
        "1,5,,7,2025-01-22,drafted stage 7,https://pay/1\n"
        "2,6,stray\n"
        "3,7"
    )
    again = source.read()
    assert again.rows[0].values["payment_link"] == "https://pay/1"
    assert again.rows[1].values["last_stage_sent"] == ""


def test_new_values_are_quoted_when_needed_or_when_the_file_quotes_everything(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path / "inv.csv", b'"id","amount"\r\n"1","5"\r\n')
    source = CsvFileSource(path)
    status = 'drafted, see "link"\nhttps://x'
    source.write_back(source.read(), [WriteBack(2, 7, DAY, status)])
    assert path.read_bytes() == (
        b'"id","amount","last_stage_sent","last_sent_at","reminder_status"\r\n'
        b'"1","5","7","2025-01-22","drafted, see ""link""\nhttps://x"\r\n'
    )
    assert CsvFileSource(path).read().rows[0].values["reminder_status"] == status


def test_an_extra_naming_an_input_column_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "inv.csv", b"invoice_id,amount\n1,5\n")
    source = CsvFileSource(path)
    with pytest.raises(ValueError, match="input column"):
        source.write_back(source.read(), [_drafted(2, Amount="0")])
    assert path.read_bytes() == b"invoice_id,amount\n1,5\n"


def test_a_row_outside_the_file_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "inv.csv", b"invoice_id\n1\n")
    source = CsvFileSource(path)
    with pytest.raises(ValueError, match="not a data row"):
        source.write_back(source.read(), [_drafted(3)])


def test_second_write_back_with_the_same_values_writes_nothing(tmp_path: Path) -> None:
    path = _write(tmp_path / "inv.csv", b"invoice_id,amount\n1,5\n2,6\n")
    source = CsvFileSource(path)
    snapshot = source.read()
    assert source.write_back(snapshot, [_drafted(2), _drafted(3)]) == 2
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))  # an mtime no write could produce
    before = path.read_bytes()
    assert source.write_back(snapshot, [_drafted(2), _drafted(3)]) == 0
    assert source.write_back(source.read(), [_drafted(2), _drafted(3)]) == 0
    assert path.stat().st_mtime_ns == 1_000_000_000
    assert path.read_bytes() == before


def test_write_back_keeps_the_file_mode_and_writes_through_a_symlink(tmp_path: Path) -> None:
    target = _write(tmp_path / "real.csv", b"invoice_id\n1\n")
    target.chmod(0o640)
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    source = CsvFileSource(link)
    assert source.write_back(source.read(), [_drafted(2)]) == 1
    assert link.is_symlink()
    assert target.stat().st_mode & 0o777 == 0o640
    assert target.read_text().startswith("invoice_id,last_stage_sent")


# ---------------------------------------------------------------------------------------------
# Refusing to clobber, atomicity
# ---------------------------------------------------------------------------------------------
def test_a_file_changed_since_the_read_is_not_overwritten(tmp_path: Path) -> None:
    path = _write(tmp_path / "inv.csv", b"invoice_id,amount\n1,5\n")
    source = CsvFileSource(path)
    snapshot = source.read()
    edited = b"invoice_id,amount\n1,5\n2,9\n"  # the bookkeeper added a row and saved
    path.write_bytes(edited)
    with pytest.raises(FileChangedError, match="read it again"):
        source.write_back(snapshot, [_drafted(2)])
    assert path.read_bytes() == edited


def test_a_snapshot_from_another_reader_is_checked_against_the_rows(tmp_path: Path) -> None:
    path = _write(tmp_path / "inv.csv", b"invoice_id,amount\n1,5\n")
    snapshot = CsvFileSource(path).read()
    assert CsvFileSource(path).write_back(snapshot, [_drafted(2)]) == 1
    path.write_bytes(path.read_bytes().replace(b"1,5", b"1,6"))
    with pytest.raises(FileChangedError):
        CsvFileSource(path).write_back(snapshot, [_drafted(2, stage=14)])


def test_a_change_during_the_write_is_detected_before_the_swap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path / "inv.csv", b"invoice_id\n1\n")
    source = CsvFileSource(path)
    snapshot = source.read()
    real_fsync = os.fsync

    def bookkeeper_saves_meanwhile(fd: int) -> None:
        real_fsync(fd)
        path.write_bytes(b"invoice_id\n1\n2\n")

    monkeypatch.setattr(csvfile.os, "fsync", bookkeeper_saves_meanwhile)
    with pytest.raises(FileChangedError):
        source.write_back(snapshot, [_drafted(2)])
    assert path.read_bytes() == b"invoice_id\n1\n2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inv.csv"]


def test_a_file_open_in_libreoffice_is_not_written(tmp_path: Path) -> None:
    path = _write(tmp_path / "inv.csv", b"invoice_id\n1\n")
    (tmp_path / ".~lock.inv.csv#").write_text("bookkeeper,host,...")
    source = CsvFileSource(path)
    with pytest.raises(FileInUseError, match="open in a spreadsheet"):
        source.write_back(source.read(), [_drafted(2)])
    assert path.read_bytes() == b"invoice_id\n1\n"


def test_a_failure_mid_write_leaves_the_original_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = b"invoice_id,amount\n1,5\n"
    path = _write(tmp_path / "inv.csv", original)
    source = CsvFileSource(path)
    snapshot = source.read()

    def disk_full(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(csvfile.os, "replace", disk_full)
    with pytest.raises(OSError, match="No space"):
        source.write_back(snapshot, [_drafted(2)])
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inv.csv"]
    monkeypatch.undo()
    assert source.write_back(snapshot, [_drafted(2)]) == 1  # nothing was half-done
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inv.csv"]


# ---------------------------------------------------------------------------------------------
# The fuzz: every byte outside the output cells round-trips
# ---------------------------------------------------------------------------------------------
_cell = st.text(alphabet='ab ,"\r\n\tü€😀ß;=\u2028x', max_size=8)
_header = st.text(alphabet="abcdefghij_ ", min_size=1, max_size=6).filter(
    lambda h: "stage" not in h and h.strip() != ""
)


@st.composite
def _files(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    """A CSV as some tool might write it, plus which rows to update."""
    own = draw(st.lists(_header, min_size=1, max_size=4, unique_by=lambda h: h.strip()))
    outputs = draw(st.lists(st.sampled_from(["last_stage_sent", "Reminder Status"]), unique=True))
    headers = own + outputs
    rows = draw(
        st.lists(st.lists(_cell, min_size=0, max_size=len(headers) + 2), min_size=1, max_size=6)
    )
    newline = draw(st.sampled_from(["\r\n", "\n"]))
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=newline, quoting=quoting, delimiter=delimiter)
    writer.writerows([headers, *rows])
    text = buffer.getvalue()
    if draw(st.booleans()):
        text = text.removesuffix(newline)
    data = (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + text.encode()
    targets = draw(st.lists(st.integers(2, len(rows) + 1), unique=True, max_size=len(rows)))
    return data, targets


_OUTPUT_KEYS = {"laststagesent", "lastsentat", "reminderstatus", "paymentlink"}


def _skeleton(data: bytes) -> tuple[bytes, list[tuple[list[str], str]]]:
    """The BOM, then per record its raw non-output fields and its raw line terminator."""
    bom = b"\xef\xbb\xbf" if data.startswith(b"\xef\xbb\xbf") else b""
    text = data[len(bom) :].decode()
    records = csvfile._tokenize(text, csvfile._delimiter(text))
    header = records[0].values
    outputs = {i for i, h in enumerate(header) if normalize_header(h) in _OUTPUT_KEYS}
    return bom, [([raw for i, raw in enumerate(r.raw) if i not in outputs], r.end) for r in records]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_files(), st.integers(0, 60))
def test_fuzzed_files_round_trip_byte_for_byte_outside_the_output_cells(
    case: tuple[bytes, list[int]], stage: int
) -> None:
    data, targets = case
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp) / "inv.csv", data)
        source = CsvFileSource(path)
        snapshot = source.read()
        records = len(_skeleton(data)[1])
        updates = [
            _drafted(row, stage=stage, payment_link=f'https://pay/{row},"q"')
            for row in targets
            if row <= records
        ]
        source.write_back(snapshot, updates)
        after = path.read_bytes()

        bom_before, before = _skeleton(data)
        bom_after, now = _skeleton(after)
        assert bom_after == bom_before
        assert len(now) == len(before)
        for number, ((old_fields, old_end), (new_fields, new_end)) in enumerate(
            zip(before, now, strict=True)
        ):
            assert new_end == old_end  # the same line terminator, byte for byte
            assert new_fields[: len(old_fields)] == old_fields
            if number > 0:  # data rows gain only padding before appended output cells
                assert all(cell in ("", '""') for cell in new_fields[len(old_fields) :])
        reread = {r.row: r.values for r in CsvFileSource(path).read().rows}
        for update in updates:
            assert reread[update.row]["last_stage_sent"] == str(stage)
            assert reread[update.row]["payment_link"] == f'https://pay/{update.row},"q"'
        assert source.write_back(snapshot, updates) == 0
        assert path.read_bytes() == after


# ---------------------------------------------------------------------------------------------
# The ledger's scope: the file's name, wherever the file is
# ---------------------------------------------------------------------------------------------
def test_the_scope_is_the_file_name_wherever_the_file_lives(tmp_path: Path) -> None:
    here = _write(tmp_path / "invoices.csv", b"invoice_id\n1\n")
    (tmp_path / "mounted").mkdir()
    there = _write(tmp_path / "mounted" / "invoices.csv", b"invoice_id\n1\n")
    assert CsvFileSource(here).scope == CsvFileSource(there).scope == "file:invoices.csv"
    assert CsvFileSource(here).read().scope == "file:invoices.csv"
    assert CsvFileSource(tmp_path / "other.csv").scope == "file:other.csv"


def test_a_moved_invoices_file_drafts_nothing_new(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> None:
    """The file moved (a container's volume, a new folder) without its written-back cells: the
    ledger alone knows what was drafted, and it still does."""
    original = (PROJECT_ROOT / "examples" / "invoices.csv").read_bytes()
    first_home, second_home = tmp_path / "app" / "examples", tmp_path / "data"
    first_home.mkdir(parents=True)
    second_home.mkdir()

    def run_on(path: Path) -> int:
        services = build_services(make_settings(INVOICES_FILE=str(path)), clock=lambda: FIXED_NOW)
        report = run_sheet(
            services.source("csv"),
            ledger=services.ledger,
            sink=lambda: services.sink_for(None),
            templates=services.templates,
            settings=services.run_settings,
            clock=lambda: FIXED_NOW,
            today=FIXED_NOW.date(),
            dry_run=False,
            force=True,
        )
        return report.drafted

    drafted = run_on(_write(first_home / "invoices.csv", original))
    assert drafted > 0
    # The copy at the new path has none of the first run's write-back: the ledger must hold.
    assert run_on(_write(second_home / "invoices.csv", original)) == 0
    maildir = tmp_path / "Maildir"
    assert len([p for p in maildir.rglob("*") if p.is_file()]) == drafted
