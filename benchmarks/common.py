"""Shared pieces of the benchmarks: the machine description, invoice rows, a gunicorn server."""

from __future__ import annotations

import datetime as dt
import os
import platform
import random
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # benchmarks run as scripts; the launcher lives in tests/

from service.domain.invoice import INPUT_FIELDS, OUTPUT_FIELDS  # noqa: E402
from tests.e2e import servers  # noqa: E402

RESULTS = ROOT / "benchmarks" / "RESULTS.md"
# The sheet columns of DESIGN §3, in order.
HEADERS = [*INPUT_FIELDS, *OUTPUT_FIELDS]
STATUSES = ["Overdue"] * 12 + ["Open"] * 3 + ["Sent"] * 2 + ["Paid"] * 2 + ["Disputed"]


def machine() -> str:
    """One line naming the machine the figures come from."""
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{mem_kb / 1024 / 1024:.0f} GiB RAM"
    except OSError:
        mem = "unknown RAM"
    return (
        f"{platform.node()} — {cpu}, {os.cpu_count()} cores, {mem}, "
        f"Linux {platform.release()}, Python {platform.python_version()}"
    )


def sheet_rows(n: int, today: dt.date, seed: int = 7) -> list[list[str]]:
    """``n`` realistic rows as a Sheet sends them: text cells, blanks as "" (100 clients)."""
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        client = i % 100
        due = today - dt.timedelta(days=rnd.randint(-20, 70))
        amount = f"{rnd.randint(50, 20000)}.{rnd.randint(0, 99):02d}"
        rows.append(
            [
                f"INV-{i + 1:07d}",
                f"Client {client:03d} Ltd",
                f"ap{client:03d}@client{client:03d}.example.com",
                amount,
                "USD",
                due.isoformat(),
                (due - dt.timedelta(days=30)).isoformat(),
                rnd.choice(STATUSES),
                "",
                "",
                "",
                "",
                "",
            ]
        )
    return rows


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


@contextmanager
def gunicorn(
    env: dict[str, str], workers: int = 1, app: str = servers.API_APP
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run the API (or ``app``) under gunicorn on a free loopback port; yield (base URL, master).

    The end-to-end tests' launcher, with a worker timeout long enough for a 100k-row request;
    gunicorn's own log goes to a temporary file, shown if it fails to start.
    """
    with (
        tempfile.TemporaryDirectory() as tmp,
        servers.gunicorn(env, workers, Path(tmp) / "gunicorn.log", timeout=600, app=app) as server,
    ):
        yield server.base, server.proc


def worker_pids(master: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


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
