"""Two years of IBM receivables replayed day by day through the headless run; times it.

The same replay as tests/e2e/test_history_replay.py: a CSV of open invoices (added when issued,
removed when settled), one run_sheet() per day over CsvFileSource with a SQLite ledger, drafts
into a Maildir (real .eml files) or an in-memory sink. Writes a section of benchmarks/RESULTS.md.
Run: ``.venv/bin/python benchmarks/history_replay.py [--sink maildir|memory]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_section

from service.adapters.maildir import MaildirSink
from tests.e2e.test_history_replay import IBM_CSV, expected_stages, ibm_invoices, replay
from tests.fakes import FakeSink


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sink", choices=["maildir", "memory", "both"], default="both")
    args = parser.parse_args()
    invoices = ibm_invoices()
    sinks = ["memory", "maildir"] if args.sink == "both" else [args.sink]
    lines = []
    for kind in sinks:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            factory = (lambda w=work: MaildirSink(w / "Maildir")) if kind == "maildir" else FakeSink
            result = replay(work, invoices, sink_factory=factory)
            expected = sum(len(expected_stages(i, result.first, result.last)) for i in invoices)
            dupes = sum(n - 1 for n in Counter((i, s) for i, s, _ in result.drafts).values())
            lines.append(
                f"| {kind} | {result.first} → {result.last} | {result.runs:,} | "
                f"{len(invoices):,} | {len(result.drafts):,} | {expected:,} | {dupes} | "
                f"{result.written:,} | {result.seconds:.1f} | "
                f"{1000 * result.seconds / result.runs:.1f} |"
            )
            print(lines[-1], flush=True)
    body = f"""
Machine: {machine()}. Date: {dt.date.today()}. Command:
`.venv/bin/python benchmarks/history_replay.py` — {IBM_CSV.name}: for every day from the first
invoice date to the last settled date, the bookkeeper's CSV holds the open invoices (issued,
not yet settled) and one headless run (`run_sheet` over `CsvFileSource`, SQLite ledger) drafts
what is due and writes it back. "expected" is worked out from the data set's dates alone
(each stage on due date + stage, if still unsettled); the e2e test asserts the two match
draft for draft, to the day.

| sink | days | runs | invoices | drafts | expected | duplicates | rows written back | seconds | ms per daily run |
|---|---|---:|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(lines)}
"""
    write_section("History replay: IBM receivables, day by day (issue 5)", body)


if __name__ == "__main__":
    main()
