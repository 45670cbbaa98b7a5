"""Soak: plan and drafts mixed for N minutes against gunicorn, the Gmail emulator injecting faults.

Pass criteria (DESIGN §8, issue 6): zero 5xx from the API, zero duplicate drafts in the
emulator's mailbox (two stored drafts with the same X-Invoice-Collector-Key), and worker RSS
growth under 10% between the end of the warm-up and the end of the run.
Run: ``.venv/bin/python benchmarks/soak.py [--minutes 10] [--workers 2] [--clients 4]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import TODAY, gunicorn, machine, sidebar_rows, write_section

from tests.emulators.gmail import running_gmail_emulator

KEY = "soak-key-0123456789"
GMAIL_TOKEN = "ya29.soak-token"
OWNER = "owner@example.com"
# Faults on every Gmail call, per call: server errors, rate limits, lost connections and the
# worst one for exactly-once, "stored but the answer was lost".
FAULTS = {"500": 0.04, "503": 0.02, "429": 0.02, "drop": 0.02, "created_then_drop": 0.02}
POOL = 50_000  # invoices the clients draw from
NEW_PER_SECOND = 1.5  # how fast the window of "current" invoices slides
WINDOW = 150  # rows a drafts request may pick from: overlap makes clients race on a key


class Tally:
    """Counts shared by the client threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.status: Counter[str] = Counter()
        self.transport_errors = 0
        self.drafted = 0
        self.row_errors = 0

    def add(self, kind: str, status: int, drafted: int = 0, row_errors: int = 0) -> None:
        """Record one response."""
        with self.lock:
            self.status[f"{kind} {status}"] += 1
            self.drafted += drafted
            self.row_errors += row_errors


def client(
    base: str, rows: list[dict[str, object]], stop: float, started: float, seed: int, tally: Tally
) -> None:
    """Loop until ``stop``: 2 plans of 100 rows to 1 drafts of 10 rows from the sliding window."""
    rnd = random.Random(seed)
    session = requests.Session()
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    while time.monotonic() < stop:
        if rnd.random() < 0.67:
            start = rnd.randrange(0, POOL - 100)
            body = orjson.dumps({"today": TODAY.isoformat(), "invoices": rows[start : start + 100]})
            kind, headers = "plan", auth
        else:
            base_index = int((time.monotonic() - started) * NEW_PER_SECOND)
            picks = rnd.sample(range(base_index, base_index + WINDOW), 10)
            body = orjson.dumps(
                {
                    "today": TODAY.isoformat(),
                    "scope": "soak-sheet",
                    "invoices": [rows[i % POOL] for i in picks],
                }
            )
            kind, headers = "drafts", {**auth, "X-Google-Access-Token": GMAIL_TOKEN}
        try:
            response = session.post(f"{base}/v1/{kind}", data=body, headers=headers, timeout=300)
        except requests.RequestException:
            with tally.lock:
                tally.transport_errors += 1
            continue
        drafted = errors = 0
        if response.status_code == 200 and kind == "drafts":
            payload = response.json()
            drafted = payload["summary"].get("drafted", 0)
            errors = payload["summary"]["error"]
        tally.add(kind, response.status_code, drafted, errors)


def rss_mb(workers: list[psutil.Process]) -> float:
    """Summed resident set of the workers, MiB."""
    return float(sum(w.memory_info().rss for w in workers)) / 2**20


def main() -> None:
    """Run the soak and write its section of RESULTS.md."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # the emulator's access log
    # Every drafts row is a candidate, so the ledger is exercised.
    rows = [{**row, "status": "Overdue"} for row in sidebar_rows(POOL, seed=11)]
    tally = Tally()
    duration = args.minutes * 60
    warmup = min(60.0, duration / 5)
    with (
        running_gmail_emulator(tokens={GMAIL_TOKEN: OWNER}, seed=5) as (gmail, gmail_url),
        tempfile.TemporaryDirectory() as tmp,
    ):
        for fault, probability in FAULTS.items():
            gmail.faults.set_rate(fault, probability)
        env = {
            "API_KEYS": KEY,
            "DATABASE_URL": f"sqlite:///{tmp}/ledger.db",
            "MAILDIR_PATH": f"{tmp}/Maildir",
            "SENDS_LOG": "off",
            "DRAFTS_BACKEND": "gmail",
            "GMAIL_SENDER": OWNER,
            "GMAIL_API_ENDPOINT": gmail_url,
            "GMAIL_RETRY_SECONDS": "20",
            # High enough never to refuse: the limiter runs on every request, as in production.
            "RATE_LIMIT_PER_MINUTE": "1000000",
        }
        with gunicorn(env, workers=args.workers) as (base, workers):
            started = time.monotonic()
            stop = started + duration
            threads = [
                threading.Thread(
                    target=client, args=(base, rows, stop, started, seed, tally), daemon=True
                )
                for seed in range(args.clients)
            ]
            for t in threads:
                t.start()
            time.sleep(warmup)
            rss_start = rss_mb(workers)
            samples = [rss_start]
            while time.monotonic() < stop:
                time.sleep(min(15.0, max(0.0, stop - time.monotonic())))
                samples.append(rss_mb(workers))
                print(
                    f"t={time.monotonic() - started:5.0f}s rss={samples[-1]:.1f} MiB "
                    f"{dict(tally.status)} drafts={len(gmail.drafts)}",
                    flush=True,
                )
            for t in threads:
                t.join(timeout=330)
            rss_end = rss_mb(workers)
            respawned = not all(w.is_running() for w in workers)
        keys = Counter(d.key for d in gmail.drafts)
        duplicates = sum(n - 1 for n in keys.values() if n > 1)
        injected = dict(gmail.faults.injected)
        stored = len(gmail.drafts)
    fivexx = sum(n for k, n in tally.status.items() if int(k.split()[1]) >= 500)
    growth = (rss_end - rss_start) / rss_start * 100
    requests_total = sum(tally.status.values())
    verdict = (
        "PASS" if fivexx == 0 and duplicates == 0 and growth < 10 and not respawned else "FAIL"
    )
    statuses = ", ".join(f"{k}: {n:,}" for k, n in sorted(tally.status.items()))
    body = f"""
Machine: {machine()}. Date: {dt.date.today().isoformat()}. Command:
`.venv/bin/python benchmarks/soak.py --minutes {args.minutes:g}` — gunicorn with {args.workers}
sync workers, {args.clients} client threads on loopback for {args.minutes:g} minutes; two thirds
`POST /v1/plan` with 100 rows, one third `POST /v1/drafts` with 10 rows drawn from a sliding
window of {WINDOW} invoices (so clients race for the same drafts and repeat finished ones),
DRAFTS_BACKEND=gmail against the Gmail emulator injecting, per Gmail call,
{", ".join(f"{k} {v:.0%}" for k, v in FAULTS.items())}.

| measure | value |
|---|---|
| verdict | **{verdict}** |
| requests | {requests_total:,} ({requests_total / duration:.1f}/s) |
| responses by route and status | {statuses} |
| 5xx from the API | {fivexx} |
| transport errors (client side) | {tally.transport_errors} |
| drafts created (reported) / stored in the emulator | {tally.drafted:,} / {stored:,} |
| duplicate drafts (same X-Invoice-Collector-Key) | {duplicates} |
| rows reported as errors (Gmail gave up in time; retryable) | {tally.row_errors:,} |
| faults injected by the emulator | {injected} |
| worker RSS after {warmup:.0f} s warm-up → end (sum of {args.workers}) | {rss_start:.1f} → {rss_end:.1f} MiB ({growth:+.1f}%), max {max(samples):.1f} |
| workers respawned | {"yes" if respawned else "no"} |
"""
    print(body)
    if not args.no_write:
        write_section("Soak (issue 6)", body)
    sys.exit(0 if verdict == "PASS" else 1)


if __name__ == "__main__":
    main()
