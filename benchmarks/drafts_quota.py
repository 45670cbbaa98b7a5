"""One mailbox's drafts/s across instances and workers (issue 17): POST /v1/drafts ×4 at once.

Two instances (gunicorn, two workers each) share one PostgreSQL ledger; four concurrent calls,
two on each instance, send 200 rows each for the same mailbox into the Gmail emulator, which
enforces Gmail's real per-user quota (15,000 units a minute; 10 per create = 25 drafts/s).
Figures: drafts/s over the batch (first to last create Gmail received), the most creates
Gmail received within any one second, creates refused by the quota, duplicates and lost
drafts. The ledger lives in a throw-away schema of DATABASE_URL (default: TEST_DATABASE_URL).
Writes a section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import uuid
from bisect import bisect_left
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import requests
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import TODAY, gunicorn, machine, write_section

from service.adapters.ledger_sql import make_engine, normalize_url
from tests.emulators.gmail import running_gmail_emulator

KEY, TOKEN = "bench-key", "ya29.bench"
TITLE = "One mailbox's Gmail quota across instances and workers (issue 17)"


def invoices(call: int, n: int) -> list[dict[str, object]]:
    return [
        {
            "row": i + 2,
            "invoice_id": f"Q{call}-{i:05d}",
            "client_name": f"Client {i % 100}",
            "client_email": f"ap{i % 100}@client{i % 100}.example.com",
            "amount": "250.00",
            "due_date": (TODAY - dt.timedelta(days=8 + i % 40)).isoformat(),
            "status": "Overdue",
        }
        for i in range(n)
    ]


def most_in_one_second(stamps_ms: list[int]) -> int:
    stamps = sorted(stamps_ms)
    return max(bisect_left(stamps, t + 1000) - i for i, t in enumerate(stamps))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200, help="rows per call, as the sidebar")
    parser.add_argument("--database-url", default=os.environ.get("TEST_DATABASE_URL"))
    parser.add_argument("--dry-run", action="store_true", help="print only, keep RESULTS.md")
    args = parser.parse_args()
    if not args.database_url:
        sys.exit("needs a PostgreSQL: --database-url or TEST_DATABASE_URL")
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = make_engine(args.database_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = normalize_url(args.database_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        with running_gmail_emulator(tokens=[TOKEN]) as (emu, gmail_url), ExitStack() as stack:
            env = {
                "API_KEYS": KEY,
                "DATABASE_URL": url.render_as_string(hide_password=False),
                "DRAFTS_BACKEND": "gmail",
                "GMAIL_SENDER": "ar@acme.example.com",
                "GMAIL_API_ENDPOINT": gmail_url,
                "GMAIL_DRAFTS_PER_SECOND": "24",
                "DRAFTS_TIME_BUDGET_SECONDS": "300",
                "SENDS_LOG": "off",
                "LOG_LEVEL": "WARNING",
            }
            bases = [stack.enter_context(gunicorn(env, workers=2))[0] for _ in range(2)]

            def call(k: int) -> Counter[str]:
                body = {
                    "today": TODAY.isoformat(),
                    "scope": "bench",
                    "invoices": invoices(k, args.rows),
                }
                headers = {"Authorization": f"Bearer {KEY}", "X-Google-Access-Token": TOKEN}
                r = requests.post(
                    bases[k % 2] + "/v1/drafts", json=body, headers=headers, timeout=900
                )
                r.raise_for_status()
                return Counter(row["reason"] for row in r.json()["rows"])

            with ThreadPoolExecutor(4) as pool:
                reasons = sum(pool.map(call, range(4)), Counter[str]())
            stamps = [d.internal_date_ms for d in emu.drafts]
            keys = [d.key for d in emu.drafts]
            creates = emu.calls["drafts.create"]
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    seconds = (max(stamps) - min(stamps)) / 1000
    rate = (len(stamps) - 1) / seconds  # creates per second between the first and the last
    line = (
        f"| {len(keys):,} | {seconds:.1f} | **{rate:.1f}** | {most_in_one_second(stamps)} | "
        f"{creates - len(keys)} | {len(keys) - len(set(keys))} | {4 * args.rows - len(set(keys))} "
        f"| {dict(reasons)} |"
    )
    body = f"""
Machine: {machine()}. Date: {dt.date.today().isoformat()}. Command:
`TEST_DATABASE_URL=… .venv/bin/python benchmarks/drafts_quota.py` — two instances × two
gunicorn workers on one PostgreSQL ledger; four concurrent `POST /v1/drafts` of {args.rows} rows
(two per instance) for one mailbox, `GMAIL_DRAFTS_PER_SECOND=24`, into the Gmail emulator
enforcing Gmail's per-user quota (15,000 units a minute = 25 drafts/s). Before this change
(issue 17): 100 creates in one second, 97/s on average, held back only by 429s.

| drafts | seconds (first to last create) | drafts/s | most creates in any one second | creates refused by the quota | duplicates | lost | row reasons |
|---:|---:|---:|---:|---:|---:|---:|---|
{line}
"""
    if args.dry_run:
        print(body)
    else:
        write_section(TITLE, body)


if __name__ == "__main__":
    main()
