"""POST /v1/plan as its clients send it: throughput against the original pipeline, and the
latency of the sidebar's 200-row chunk.

1. Throughput. gunicorn with one worker, which plans in its own process (it must fork none),
   answers 200, 1k, 5k and 20k rows over HTTP on loopback; the original design's pipeline
   (original_pipeline.py) plans the same rows in this process, try for try in turn with the
   request, so both meet the machine in the same moments. Every answer is checked against the
   original's drafts. Then one request of 100k rows, the worker's RSS sampled with psutil.
2. Latency. gunicorn with 2 workers; clients send the 200-row chunks of a 10,000-row sheet
   back to back (a closed loop, each waiting for its answer), 1 client and then 8.

Prints a Markdown section for benchmarks/RESULTS.md on stdout; progress goes to stderr.
Run: ``make bench`` or ``.venv/bin/python benchmarks/plan_throughput.py [--sizes 200,20000]
[--large 0] [--requests 500]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import http.client
import itertools
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import HEADERS, ROOT, TODAY, gunicorn, machine, plan_body, sidebar_rows
from original_pipeline import run_daily

KEY = "bench-key-0123456789"
ENV = {
    "API_KEYS": KEY,
    "MAX_ROWS_PER_REQUEST": "200000",
    "MAX_REQUEST_BYTES": str(256 << 20),
    # The limiter runs on every request, as in production, but never refuses one here.
    "RATE_LIMIT_PER_MINUTE": "1000000",
}
OPEN_STATUSES = {"Overdue", "Open", "Sent"}  # of sidebar_rows' statuses, those not closed
CHUNK = 200  # rows per request, as apps_script/Code.js sends them
RSS_LIMIT_MIB = 512


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class Client:
    """One HTTP client of the API. gunicorn's sync workers close the connection after each
    answer, so every request opens its own, as Apps Script's UrlFetch does."""

    def __init__(self, base: str) -> None:
        url = urlsplit(base)
        self.conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=600)
        self.headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}

    def plan(self, body: bytes) -> tuple[float, int, bytes]:
        """POST one body; the seconds from sending to the answer's last byte, status, answer."""
        start = time.perf_counter()
        try:
            self.conn.request("POST", "/v1/plan", body=body, headers=self.headers)
            response = self.conn.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()  # the next request opens a new connection
            raise
        return time.perf_counter() - start, response.status, payload


def original_drafts(rows: list[dict[str, object]]) -> tuple[float, set[tuple[str, int]]]:
    """The original pipeline on the same rows, as the Sheets API hands them: seconds, drafts."""
    values = [HEADERS, *([row[h] for h in HEADERS] for row in rows)]
    start = time.perf_counter()
    created = run_daily(values, str(ROOT / "templates"), TODAY)
    return time.perf_counter() - start, {(str(c[0]), int(str(c[1]))) for c in created}


def check(
    rows: list[dict[str, object]], status: int, payload: bytes, drafts: set[tuple[str, int]] | None
) -> int:
    """Fail unless the answer covers every row once, none in error, every draft rendered, and
    it drafts what the original drafts (if given): the original drafts only "Overdue" rows, the
    service every status not closed (DESIGN §4). Returns how many rows it drafts."""
    if status != 200:
        raise SystemExit(f"{len(rows):,} rows: HTTP {status}: {payload[:500]!r}")
    answer = orjson.loads(payload)["rows"]
    state = {r["invoice_id"]: r["status"] for r in rows}
    drafted = [r for r in answer if r["action"] == "draft"]
    problems = []
    if sorted(r["row"] for r in answer) != [r["row"] for r in rows]:
        problems.append("rows missing or repeated")
    if any(r["action"] == "error" for r in answer):
        problems.append("rows in error")
    if any(state[r["invoice_id"]] not in OPEN_STATUSES for r in drafted):
        problems.append("a closed invoice drafted")
    if not all(r["subject"] and r["body"] for r in drafted):
        problems.append("a draft without subject or body")
    overdue = {
        (r["invoice_id"], r["stage"]) for r in drafted if state[r["invoice_id"]] == "Overdue"
    }
    if drafts is not None and overdue != drafts:
        problems.append(f"{len(overdue ^ drafts)} drafts differ from the original's")
    if problems:
        raise SystemExit(f"{len(rows):,} rows: wrong answer: {'; '.join(problems)}")
    return len(drafted)


def one_process(worker: psutil.Process) -> None:
    """Fail if the worker forked: the figures are of one process per worker."""
    if children := worker.children(recursive=True):
        raise SystemExit(f"the worker forked {len(children)} process(es); this measures one")


@dataclass
class Comparison:
    rows: int
    body_kib: float
    tries: int
    service_ms: float
    original_ms: float
    drafted: int


def warm_up(client: Client) -> None:
    """A worker's first requests load what it loads lazily (templates, locale data): not timed."""
    body = plan_body(sidebar_rows(CHUNK))
    for _ in range(30):
        client.plan(body)


def compare(client: Client, rows: list[dict[str, object]]) -> Comparison:
    """The median of the service's and the original's times on the same rows, in turn."""
    body = plan_body(rows)
    n = len(rows)
    tries = 40 if n <= 200 else 20 if n <= 1000 else 10 if n <= 5000 else 7
    gc.collect()
    gc.freeze()  # this script's own objects (rows, bodies) are not the original's to collect
    # An untimed try of each first: the worker's heap grows to a size once, not per request.
    _, drafts = original_drafts(rows)
    drafted = check(rows, *client.plan(body)[1:], drafts)
    service, original = [], []
    for _ in range(tries):
        service.append(client.plan(body)[0])
        original.append(original_drafts(rows)[0])
    return Comparison(
        n,
        len(body) / 1024,
        tries,
        1000 * statistics.median(service),
        1000 * statistics.median(original),
        drafted,
    )


def peak_rss(
    client: Client, worker: psutil.Process, rows: list[dict[str, object]]
) -> tuple[float, float, float]:
    """One request of these rows; the worker's RSS before it and its peak during it (MiB,
    sampled every 2 ms), and the request's seconds."""
    body = plan_body(rows)
    before = worker.memory_info().rss
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.002):
            peak = max(peak, worker.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        seconds, status, payload = client.plan(body)
    finally:
        done.set()
        sampler.join()
    check(rows, status, payload, None)
    return before / 2**20, peak / 2**20, seconds


def closed_loop(
    base: str, bodies: list[bytes], clients: int, total: int, seconds: float
) -> tuple[list[float], int, float]:
    """``clients`` threads send ``bodies`` in turn, each the next as soon as its answer is in,
    until ``total`` requests are sent or ``seconds`` pass: the latencies of the 200s, the
    number of failures (other status, transport error) and the wall time."""
    tickets = itertools.count()  # next() on it is atomic under the GIL
    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def run() -> None:
        nonlocal failures
        client = Client(base)
        mine: list[float] = []
        failed = 0
        while time.monotonic() < stop and (ticket := next(tickets)) < total:
            try:
                took, status, _ = client.plan(bodies[ticket % len(bodies)])
            except (OSError, http.client.HTTPException):
                failed += 1
                continue
            if status == 200:
                mine.append(took)
            else:
                failed += 1
        with lock:
            latencies.extend(mine)
            failures += failed

    threads = [threading.Thread(target=run) for _ in range(clients)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, failures, time.monotonic() - start


def sheet_chunks() -> list[bytes]:
    """The bodies of the 200-row chunks of a 10,000-row sheet, as the sidebar sends them."""
    rows = sidebar_rows(10_000, seed=3)
    return [plan_body(rows[i : i + CHUNK]) for i in range(0, len(rows), CHUNK)]


def check_chunks(base: str, bodies: list[bytes]) -> None:
    """Send each chunk once and check its answer against the original's on the same rows."""
    client = Client(base)
    for body in bodies:
        rows = orjson.loads(body)["invoices"]
        check(rows, *client.plan(body)[1:], original_drafts(rows)[1])


def chunk_latency(base: str, bodies: list[bytes], clients: int, total: int) -> tuple[str, float]:
    """``total`` chunks from ``clients`` clients, after a warm-up: a table line and the p99 (ms)."""
    closed_loop(base, bodies, clients, 25 * clients, 60)  # each worker's caches, as in a day
    latencies, failures, wall = closed_loop(base, bodies, clients, total, 180)
    q = statistics.quantiles([1000 * s for s in latencies], n=100, method="inclusive")
    line = (
        f"| {clients} | {len(latencies) + failures:,} | {failures} | {len(latencies) / wall:,.0f} | "
        f"{q[49]:.1f} | {q[94]:.1f} | {q[98]:.1f} | {1000 * max(latencies):.1f} |"
    )
    log(line)
    return line, q[98]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="200,1000,5000,20000", help="rows per request")
    parser.add_argument("--large", type=int, default=100_000, help="rows for peak RSS; 0: skip")
    parser.add_argument("--requests", type=int, default=3000, help="chunks sent by 8 clients")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    log(f"{machine()}; load average {load:.2f}")

    table: list[str] = []
    notes: list[str] = []
    with gunicorn(ENV, workers=1) as (base, (worker,)):
        client = Client(base)
        warm_up(client)
        for n in [int(s) for s in args.sizes.split(",")]:
            c = compare(client, sidebar_rows(n))
            one_process(worker)
            table.append(
                f"| {n:,} | {c.body_kib:,.0f} | {c.tries} | {c.drafted:,} | {c.service_ms:,.1f} | "
                f"{c.original_ms:,.1f} | {c.service_ms / c.original_ms:.2f} | "
                f"**{c.original_ms / c.service_ms:.1f}×** |"
            )
            log(table[-1])
            if n == 20_000:
                met = "met" if c.original_ms >= 2 * c.service_ms else "**not met**"
                notes.append(
                    f"At 20,000 rows the service plans {c.original_ms / c.service_ms:.1f}× as fast "
                    f"as the original — target at least 2×: {met}."
                )
        if args.large:
            before, peak, seconds = peak_rss(client, worker, sidebar_rows(args.large))
            one_process(worker)
            met = "met" if peak < RSS_LIMIT_MIB else "**not met**"
            notes.append(
                f"{args.large:,} rows in one request ({seconds:.1f} s): the worker's RSS went from "
                f"{before:.0f} to a peak of {peak:.0f} MiB — target under {RSS_LIMIT_MIB} MiB: {met}."
            )
            log(notes[-1])

    bodies = sheet_chunks()
    with gunicorn(ENV, workers=2) as (base, _workers):
        check_chunks(base, bodies)
        single, _p99 = chunk_latency(base, bodies, 1, max(100, args.requests // 10))
        eight, p99 = chunk_latency(base, bodies, 8, args.requests)
    latency = [single, eight]
    notes.append(
        f"The sidebar's chunk with 8 clients on 2 workers: p99 {p99:.1f} ms — target under 25 ms on "
        f"a quiet machine: {'met' if p99 < 25 else '**not met**'}."
    )
    print(report(load, table, latency, notes, len(bodies[0])))


def report(load: float, table: list[str], latency: list[str], notes: list[str], chunk: int) -> str:
    """The Markdown section for RESULTS.md."""
    command = "make bench" if sys.argv[1:] == [] else "plan_throughput.py " + " ".join(sys.argv[1:])
    return f"""
## Plan: throughput and the sidebar's chunk (issue 15)

Machine: {machine()}. Date: {dt.date.today().isoformat()}. Load average (1 min) at the start:
{load:.2f}. Command: `{command}` (`benchmarks/plan_throughput.py`).

Rows as the sidebar sends them (`rowToInvoice_`, apps_script/Sheet.js): the sheet's columns plus
`row`, dates as ISO text, amounts and stages as numbers; 100 clients, due dates from 20 days
ahead to 70 behind, 60% Overdue, a third of those past a stage reminded before.

**Throughput.** "Service" is `POST /v1/plan` over HTTP on loopback to gunicorn with one worker,
one process (the run fails if the worker forks): body sent, every row validated and decided, a
preview rendered for every draft, the answer received. "Original" is the original design's
pipeline (pandas, `iterrows`, one template file read and rendered per draft) in-process on the
same rows, without HTTP or JSON, timed in turn with each request. Figures are medians of the
tries, after 30 untimed 200-row requests and an untimed try of each size; every answer is
checked against the original's drafts.

| rows | body KiB | tries | drafts | service ms | original ms | service ÷ original | speed-up |
|---:|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(table)}

**The sidebar's chunk.** `POST /v1/plan` with 200 rows (~{chunk / 1024:.0f} KiB),
the 50 chunks of a 10,000-row sheet in turn (each answer checked once against the original's
drafts), to gunicorn with 2 workers on loopback, after 25 untimed requests per client. Each
client sends its next chunk as soon as its answer is in (a closed loop with no pause: busier
than the sidebar, which reads and writes the sheet between chunks), so with 8 clients a request
waits for those ahead of it. The clients run on the same cores as the server.

| clients | requests | errors | requests/s | p50 ms | p95 ms | p99 ms | max ms |
|---:|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(latency)}

{chr(10).join(f"- {n}" for n in notes)}
"""


if __name__ == "__main__":
    main()
