"""Two years of real receivables replayed day by day through the local-file source.

IBM's late-payment histories (2,466 invoices with issue, due and settled dates) drive a
bookkeeper's CSV of open invoices: each day new ones are added when issued and settled ones
removed, then the headless run (run_sheet over CsvFileSource, SQLite ledger) drafts and
writes back.
The drafts must follow the invoices' real lateness to the day. `benchmarks/history_replay.py`
times the same replay and records it in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import holidays
import pytest

from service.adapters.csvfile import CsvFileSource
from service.bootstrap import build_services
from service.config import settings_from_env
from service.domain.calendar import BusinessCalendar
from service.usecases.drafts import DraftOutcome
from service.usecases.run import run_sheet
from tests.conftest import SHARED_DATA, require_shared_data
from tests.fakes import FakeSink

IBM_CSV = SHARED_DATA / "ibm_ar_late_payment_histories.csv"
STAGES = (7, 14, 21, 28, 35, 42)
# The file keeps its own headers; configuration maps them (DESIGN §9: COLUMN_MAP, DATE_FORMAT).
IBM_ENV = {
    "COLUMN_MAP": "invoice_id=invoiceNumber,client_name=customerID,amount=InvoiceAmount,"
    "due_date=DueDate,sent_date=InvoiceDate",
    "DATE_FORMAT": "%m/%d/%Y",
    "SENDS_LOG": "off",
}


def _date(text: str) -> dt.date:
    return dt.datetime.strptime(text, "%m/%d/%Y").date()


@dataclass(frozen=True)
class IbmInvoice:
    """One invoice of the data set with the dates the replay needs."""

    invoice_id: str
    issued: dt.date
    due: dt.date
    settled: dt.date
    days_late: int
    raw: dict[str, str]


def ibm_invoices() -> list[IbmInvoice]:
    """The data set, or a skip (with the path) where the shared data is not present."""
    require_shared_data(IBM_CSV)
    with IBM_CSV.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for row in rows:
        raw = dict(row)
        # No email column in the data set: a stable synthetic address per customer.
        raw["client_email"] = f"ap+{row['customerID'].lower()}@customers.example.com"
        raw["status"] = "Open"
        out.append(
            IbmInvoice(
                row["invoiceNumber"],
                _date(row["InvoiceDate"]),
                _date(row["DueDate"]),
                _date(row["SettledDate"]),
                int(row["DaysLate"]),
                raw,
            )
        )
    return out


@dataclass
class Replay:
    """What a replay did."""

    first: dt.date
    last: dt.date
    runs: int = 0
    drafts: list[tuple[str, int, dt.date]] = field(default_factory=list)  # invoice, stage, day
    written: int = 0
    seconds: float = 0.0


class Bookkeeper:
    """Edits the CSV between runs as a person would: adds issued invoices, archives paid ones.

    The file holds the open invoices (issued, not yet settled), so a settled invoice cannot be
    chased; rows keep whatever the runs wrote back into them.
    """

    def __init__(self, path: Path, invoices: list[IbmInvoice]) -> None:
        self.path = path
        self.issued_on: dict[dt.date, list[IbmInvoice]] = {}
        self.settled_on: dict[dt.date, set[str]] = {}
        for inv in invoices:
            self.issued_on.setdefault(inv.issued, []).append(inv)
            self.settled_on.setdefault(inv.settled, set()).add(inv.invoice_id)
        self.settled_by: dict[str, dt.date] = {i.invoice_id: i.settled for i in invoices}
        with path.open("w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerow([*invoices[0].raw])

    def open_books(self, day: dt.date, first: dt.date) -> None:
        """Bring the file to the morning of ``day``."""
        if day == first:  # a replay may start mid-history: everything issued and still open
            new = [i for d, inv in self.issued_on.items() if d <= day for i in inv]
            settled: set[str] = set()
        else:
            new, settled = self.issued_on.get(day, []), self.settled_on.get(day, set())
        new = [i for i in new if i.settled > day]  # settled on its issue day: never open
        if not new and not settled:
            return
        with self.path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = list(reader.fieldnames or [])
            rows = [r for r in reader if r["invoiceNumber"] not in settled]
        rows.extend(inv.raw for inv in new)
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields, restval="")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.path)


def replay(
    workdir: Path,
    invoices: list[IbmInvoice],
    *,
    first: dt.date | None = None,
    last: dt.date | None = None,
    sink_factory: Callable[[], object] = FakeSink,
    env: dict[str, str] | None = None,
) -> Replay:
    """Run every day from ``first`` (default: the first issue date) to ``last`` (default: the
    last settled date), each day after the bookkeeper's edits."""
    first = first or min(i.issued for i in invoices)
    last = last or max(i.settled for i in invoices)
    settings = settings_from_env(
        {
            **IBM_ENV,
            **(env or {}),
            "DATABASE_URL": f"sqlite:///{workdir / 'ledger.db'}",
            "MAILDIR_PATH": str(workdir / "Maildir"),
        }
    )
    services = build_services(settings)
    path = workdir / "invoices.csv"
    books = Bookkeeper(path, invoices)
    source = CsvFileSource(path)
    sink = sink_factory()
    result = Replay(first, last)
    started = time.perf_counter()
    day = first
    while day <= last:
        books.open_books(day, first)
        now = dt.datetime.combine(day, dt.time(9), tzinfo=dt.UTC)

        def record(outcome: DraftOutcome, day: dt.date = day) -> None:
            assert outcome.entry is not None
            result.drafts.append((outcome.planned.invoice_id, outcome.entry.key.stage, day))

        report = run_sheet(
            source,
            ledger=services.ledger,
            sink=lambda: sink,  # type: ignore[arg-type, return-value]
            templates=services.templates,
            settings=services.run_settings,
            clock=lambda now=now: now,
            today=day,
            dry_run=False,
            force=True,
            on_created=record,
        )
        assert report.failed == 0 and report.write_error is None, report.summary
        if isinstance(sink, FakeSink):  # the bookkeeper sends the day's drafts
            sink.sent |= {created.draft_id for created in sink.ids.values()}
        result.runs += 1
        result.written += report.written
        day += dt.timedelta(days=1)
    result.seconds = time.perf_counter() - started
    return result


def expected_stages(
    inv: IbmInvoice, first: dt.date, last: dt.date, calendar: BusinessCalendar | None = None
) -> dict[int, dt.date]:
    """Stage -> the day it is drafted (the day it falls due, or with business days the first
    business day from then), for the stages reached while the invoice was open."""
    out = {}
    for stage in STAGES:
        day = inv.due + dt.timedelta(days=stage)
        if calendar is not None:
            day = calendar.next_business_day(day)
        # Open that day (issued, not yet settled) and inside the replayed days.
        if day < inv.settled and first <= day <= last:
            out[stage] = day
    return out


US = BusinessCalendar(holidays=holidays.country_holidays("US", years=range(2011, 2015)))


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("business_days", [False, True], ids=["any-day", "us-business-days"])
def test_two_years_of_ibm_invoices_are_drafted_exactly_as_late_as_they_were(
    tmp_path: Path, business_days: bool
) -> None:
    invoices = ibm_invoices()
    env = {"BUSINESS_DAYS": "true", "HOLIDAYS_COUNTRY": "US"} if business_days else {}
    result = replay(tmp_path, invoices, env={"BUSINESS_DAYS": "false", **env})
    calendar = US if business_days else None

    by_id = {i.invoice_id: i for i in invoices}
    keys = Counter((invoice_id, stage) for invoice_id, stage, _ in result.drafts)
    assert max(keys.values()) == 1  # at most one draft per (invoice, stage)
    for invoice_id, stage, day in result.drafts:
        assert day < by_id[invoice_id].settled, (invoice_id, stage, day)
    drafted: dict[str, dict[int, dt.date]] = {}
    for invoice_id, stage, day in result.drafts:
        drafted.setdefault(invoice_id, {})[stage] = day
    mismatches = [
        (inv.invoice_id, inv.days_late, drafted.get(inv.invoice_id, {}))
        for inv in invoices
        if drafted.get(inv.invoice_id, {})
        != expected_stages(inv, result.first, result.last, calendar)
    ]
    assert mismatches == []
    # Never-late invoices got nothing; the latest got every stage their lateness reached.
    assert all(inv.invoice_id not in drafted for inv in invoices if inv.days_late <= 7)
    assert result.runs == (result.last - result.first).days + 1
    assert result.written == len(result.drafts)  # each draft written back to its row, once
    # The data set's own lateness, independently: 740 drafts over 738 days.
    assert len(result.drafts) == sum(
        len(expected_stages(i, result.first, result.last, calendar)) for i in invoices
    )
    if calendar is not None:
        assert all(calendar.is_business_day(day) for _, _, day in result.drafts)
    assert len(result.drafts) > 500


@pytest.mark.timeout(60)
def test_a_run_never_drafts_an_invoice_on_the_day_it_is_settled(tmp_path: Path) -> None:
    # One invoice settled exactly 14 days late: stage 7 drafted, stage 14 is due the very
    # day it is paid, so it must not be drafted.
    invoices = [i for i in ibm_invoices() if i.days_late == 14][:1]
    assert invoices
    inv = invoices[0]

    result = replay(
        tmp_path,
        invoices,
        first=inv.issued,
        last=inv.settled + dt.timedelta(3),
        env={"BUSINESS_DAYS": "false"},
    )

    assert [(s, d) for _, s, d in result.drafts] == [(7, inv.due + dt.timedelta(days=7))]
