"""Load: POST /v1/plan with 100-row bodies against gunicorn with 2 and 4 workers, on loopback.

A Python load generator (threads, one keep-alive http.client connection each, closed loop):
requests/s, p50/p90/p99 latency and errors (non-200 or transport) per worker count.
Run: ``.venv/bin/python benchmarks/load.py [--workers 2,4] [--connections 8] [--seconds 30]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import HEADERS, gunicorn, machine, sheet_rows, write_section

TODAY = dt.date(2026, 11, 24)
KEY = "load-key-0123456789"
ROWS = 100


def bodies(count: int) -> list[bytes]:
    """``count`` different 100-row plan bodies (so no two requests are byte-identical)."""
    rows = [dict(zip(HEADERS, r, strict=True)) for r in sheet_rows(ROWS * count, TODAY, seed=3)]
    return [
        orjson.dumps({"today": TODAY.isoformat(), "invoices": rows[i * ROWS : (i + 1) * ROWS]})
        for i in range(count)
    ]


def run_load(
    base: str, payloads: list[bytes], connections: int, seconds: float, warmup: float
) -> dict[str, float]:
    """Closed-loop load for ``seconds`` after ``warmup``; the figures."""
    url = urlsplit(base)
    lock = threading.Lock()
    latencies: list[float] = []
    errors = 0
    begin = time.monotonic()
    measure_from = begin + warmup
    stop = measure_from + seconds
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}

    def worker(index: int) -> None:
        nonlocal errors
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=60)
        mine: list[float] = []
        failed = 0
        i = index
        while (now := time.monotonic()) < stop:
            body = payloads[i % len(payloads)]
            i += connections
            try:
                conn.request("POST", "/v1/plan", body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=60)
            took = time.monotonic() - now
            if now >= measure_from:
                if ok:
                    mine.append(took)
                else:
                    failed += 1
        conn.close()
        with lock:
            latencies.extend(mine)
            errors += failed

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {
        "requests": len(latencies) + errors,
        "rps": len(latencies) / seconds,
        "rows_s": len(latencies) * ROWS / seconds,
        "p50": pct(0.50),
        "p90": pct(0.90),
        "p99": pct(0.99),
        "max": latencies[-1] * 1000,
        "mean": statistics.fmean(latencies) * 1000,
        "errors": errors,
    }


def main() -> None:
    """Measure each worker count and write the section of RESULTS.md."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", default="2,4")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    payloads = bodies(50)
    lines = []
    for workers in [int(w) for w in args.workers.split(",")]:
        with (
            tempfile.TemporaryDirectory() as tmp,
            gunicorn(
                {"API_KEYS": KEY, "DATABASE_URL": f"sqlite:///{tmp}/l.db", "MAILDIR_PATH": tmp},
                workers=workers,
            ) as (base, _master),
        ):
            r = run_load(base, payloads, args.connections, args.seconds, args.warmup)
        lines.append(
            f"| {workers} | {args.connections} | {r['requests']:,} | {r['rps']:,.1f} | "
            f"{r['rows_s']:,.0f} | {r['p50']:.0f} | {r['p90']:.0f} | {r['p99']:.0f} | "
            f"{r['max']:.0f} | {r['errors']} |"
        )
        print(lines[-1], flush=True)
    body = f"""
Machine: {machine()}. Date: {dt.date.today().isoformat()}. Command:
`.venv/bin/python benchmarks/load.py --connections {args.connections} --seconds {args.seconds:g}`.
`POST /v1/plan` with {ROWS}-row bodies (50 different ones, ~{len(payloads[0]) / 1024:.0f} KiB each,
60% overdue so ~60 previews rendered per request) against gunicorn (sync workers) on loopback;
a closed loop of {args.connections} keep-alive connections from Python threads in the same
machine, {args.warmup:g} s warm-up then {args.seconds:g} s measured. The load generator shares
the CPU cores with the server, so the figures are a floor. Errors: non-200 answers and
transport failures.

| workers | connections | requests | requests/s | rows/s | p50 ms | p90 ms | p99 ms | max ms | errors |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
""" + "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section("Load: /v1/plan, 100-row bodies (issue 6)", body)


if __name__ == "__main__":
    main()
