"""Shared pieces of the benchmarks: the machine description, invoice rows, a gunicorn server."""

from __future__ import annotations

import datetime as dt
import os
import platform
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from service.domain.invoice import INPUT_FIELDS, OUTPUT_FIELDS

ROOT = Path(__file__).resolve().parent.parent
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


@contextmanager
def gunicorn(
    env: dict[str, str], workers: int = 1
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run the API under gunicorn on a free loopback port; yield (base URL, master process)."""
    port = free_port()
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--timeout",
            "600",
            "--log-level",
            "warning",
            "service.api.app:create_app()",
        ],
        cwd=ROOT,
        env={**os.environ, **env},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(base + "/healthz", timeout=1)
                break
            # A worker still importing can accept and then time out: keep waiting then too.
            except (requests.ConnectionError, requests.Timeout):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.1)
        yield base, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


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
