"""Shared pieces of the benchmarks: the machine, invoice rows as the sidebar sends them, gunicorn."""

from __future__ import annotations

import datetime as dt
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # benchmarks run as scripts; the launcher lives in tests/

from tests.e2e import servers  # noqa: E402

RESULTS = ROOT / "benchmarks" / "RESULTS.md"
TODAY = dt.date(2026, 11, 24)
# The sheet's header row (DESIGN §3); the last three columns are the ones the add-on writes.
HEADERS = [
    "invoice_id",
    "client_name",
    "client_email",
    "amount",
    "currency",
    "due_date",
    "sent_date",
    "status",
    "amount_paid",
    "notes",
    "last_stage_sent",
    "last_sent_at",
    "reminder_status",
]
STATUSES = ["Overdue"] * 12 + ["Open"] * 3 + ["Sent"] * 2 + ["Paid"] * 2 + ["Disputed"]
STAGES = (7, 14, 21, 28, 35, 42)


def machine() -> str:
    """One line naming the machine the figures come from: CPU model, cores, RAM, Python."""
    cpu = platform.processor() or "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = psutil.virtual_memory().total / 2**30
    return (
        f"{platform.node()} — {cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, "
        f"Linux {platform.release()}, Python {platform.python_version()}"
    )


def sidebar_rows(n: int, today: dt.date = TODAY, seed: int = 7) -> list[dict[str, object]]:
    """``n`` invoices as the sidebar sends them (``rowToInvoice_`` in apps_script/Sheet.js).

    Keyed by the sheet's headers plus ``row``, the sheet row (the first invoice is on row 2):
    dates as ISO text, amounts and stages as numbers, blank cells as "". 100 clients, due dates
    from 20 days ahead to 70 days behind, 60% Overdue; a third of the invoices a week or more
    past a stage were reminded at an earlier stage, as a sheet is after a few daily runs.
    """
    rnd = random.Random(seed)
    rows: list[dict[str, object]] = []
    for i in range(n):
        client = i % 100
        days = rnd.randint(-20, 70)
        due = today - dt.timedelta(days=days)
        cents = rnd.randint(5_000, 2_000_000)
        stage_sent: int | str = ""
        sent_at = reminder = ""
        earlier = [s for s in STAGES if s <= days - 7]
        if earlier and rnd.random() < 1 / 3:
            stage = rnd.choice(earlier)
            sent_at = (due + dt.timedelta(days=stage)).isoformat()
            stage_sent, reminder = stage, f"Drafted stage {stage} on {sent_at}"
        cells = [
            f"INV-{i + 1:07d}",
            f"Client {client:03d} Ltd",
            f"ap{client:03d}@client{client:03d}.example.com",
            cents // 100 if cents % 100 == 0 else cents / 100,  # JSON.stringify: 1250, 99.5
            "USD",
            due.isoformat(),
            (due - dt.timedelta(days=30)).isoformat(),
            rnd.choice(STATUSES),
            "",
            "",
            stage_sent,
            sent_at,
            reminder,
        ]
        rows.append({"row": i + 2, **dict(zip(HEADERS, cells, strict=True))})
    return rows


def plan_body(rows: list[dict[str, object]], today: dt.date = TODAY) -> bytes:
    """The JSON body ``processChunk_`` (apps_script/Code.js) posts for these rows."""
    return orjson.dumps(
        {
            "today": today.isoformat(),
            "timezone": "Europe/London",
            "scope": "1BenchmarkSpreadsheetId0000000000000000000000",
            "invoices": rows,
        }
    )


@contextmanager
def gunicorn(env: dict[str, str], workers: int = 1) -> Iterator[tuple[str, list[psutil.Process]]]:
    """Run the API under gunicorn on a free loopback port; yield (base URL, its workers).

    The end-to-end tests' launcher, with a worker timeout long enough for a 100k-row request;
    the ledger and the Maildir in a temporary directory unless ``env`` names them. gunicorn's
    own log goes there too, shown if it fails to start.
    """
    with tempfile.TemporaryDirectory() as tmp:
        env = {"DATABASE_URL": f"sqlite:///{tmp}/ledger.db", "MAILDIR_PATH": f"{tmp}/M", **env}
        with servers.gunicorn(env, workers, Path(tmp) / "gunicorn.log", timeout=600) as server:
            master = psutil.Process(server.proc.pid)
            deadline = time.monotonic() + 60
            # /healthz answers once one worker is up; the others may still be booting.
            while len(master.children()) < workers and time.monotonic() < deadline:
                time.sleep(0.1)
            yield server.base, master.children()


def write_section(title: str, body: str) -> None:
    """Replace (or append) one '## title' section of RESULTS.md."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
    marker = f"## {title}\n"
    section = f"{marker}\n{body.strip()}\n\n"
    if marker in text:
        start = text.index(marker)
        nxt = text.find("\n## ", start + len(marker))
        text = text[:start] + section + (text[nxt + 1 :] if nxt != -1 else "")
    else:
        text += section
    RESULTS.write_text(text)
