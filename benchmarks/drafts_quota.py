"""1,000 drafts through POST /v1/drafts (gunicorn) into the Gmail emulator enforcing the quota.

The emulator enforces Gmail's per-user quota: 15,000 units a minute, 10 per drafts.create,
i.e. 25 drafts/s. The window is scaled down (1,500 units per 6 s: the same 25 drafts/s) so the
quota binds within the run. Figures: drafts/s ÷ 25, HTTP round trips to Gmail, 429s seen,
duplicates and lost drafts. Writes a section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import TODAY, gunicorn, machine, write_section

from tests.emulators.gmail import running_gmail_emulator

KEY, TOKEN = "bench-key", "ya29.bench"
CEILING = 25.0  # drafts per second: 15,000 units/min ÷ 10 units/create ÷ 60 s


def invoices(n: int) -> list[dict[str, object]]:
    return [
        {
            "row": i + 2,
            "invoice_id": f"Q-{i:05d}",
            "client_name": f"Client {i % 100}",
            "client_email": f"ap{i % 100}@client{i % 100}.example.com",
            "amount": "250.00",
            "due_date": (TODAY - dt.timedelta(days=8 + i % 40)).isoformat(),
            "status": "Overdue",
        }
        for i in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--drafts", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=200, help="rows per request, as the sidebar")
    args = parser.parse_args()
    rows = invoices(args.drafts)
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_gmail_emulator(tokens=[TOKEN], quota_units=1500, quota_window_s=6.0) as (emu, url),
    ):
        env = {
            "API_KEYS": KEY,
            "DATABASE_URL": f"sqlite:///{tmp}/l.db",
            "DRAFTS_BACKEND": "gmail",
            "GMAIL_SENDER": "ar@acme.example.com",
            "GMAIL_API_ENDPOINT": url,
            "SENDS_LOG": "off",
            "LOG_LEVEL": "WARNING",
        }
        with gunicorn(env, workers=1) as (base, _):
            start = time.perf_counter()
            reasons: Counter[str] = Counter()
            for i in range(0, len(rows), args.chunk):
                body = {
                    "today": TODAY.isoformat(),
                    "scope": "bench",
                    "invoices": rows[i : i + args.chunk],
                }
                r = requests.post(
                    base + "/v1/drafts",
                    json=body,
                    timeout=600,
                    headers={"Authorization": f"Bearer {KEY}", "X-Google-Access-Token": TOKEN},
                )
                r.raise_for_status()
                reasons.update(row["reason"] for row in r.json()["rows"])
            elapsed = time.perf_counter() - start
        keys = [d.key for d in emu.drafts]
        calls = Counter(emu.calls)
    rate = len(keys) / elapsed
    duplicates = len(keys) - len(set(keys))
    lost = args.drafts - len(set(keys))
    line = (
        f"| {args.drafts:,} | {elapsed:.1f} | {rate:.1f} | {rate / CEILING:.2f} | "
        f"{emu.round_trips:,} | {calls.get('drafts.create', 0):,} | {calls.get('drafts.create', 0) - len(keys)} | "
        f"{duplicates} | {lost} | {dict(reasons)} |"
    )
    print(line)
    write_section(
        "Gmail drafts under the per-user quota (issue 3)",
        f"""
Machine: {machine()}. Date: {dt.date.today().isoformat()}. Command:
`.venv/bin/python benchmarks/drafts_quota.py` — POST /v1/drafts in chunks of {args.chunk} rows
(as the sidebar sends them) to gunicorn (1 worker), drafts into the Gmail emulator enforcing
the per-user quota scaled to 1,500 units per 6 s (= Gmail's 25 drafts/s).

| drafts | seconds | drafts/s | ÷ 25 (quota ceiling) | Gmail round trips | drafts.create calls | creates refused by the quota | duplicates | lost | row reasons |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|
{line}
""",
    )


if __name__ == "__main__":
    main()
