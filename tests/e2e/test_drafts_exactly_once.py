"""Exactly-once under real concurrency, crashes and faults (gunicorn, SQLite/PostgreSQL, Gmail)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.servers import gunicorn, start
from tests.emulators.gmail import Fault, running_gmail_emulator

pytestmark = pytest.mark.slow
KEY = "e2e-key-0123456789"
TOKEN = "ya29.e2e-gmail-token"
TODAY = dt.date(2026, 11, 24)
AUTH = {"Authorization": f"Bearer {KEY}", "X-Google-Access-Token": TOKEN}


def rows(n: int, prefix: str = "E") -> list[dict[str, Any]]:
    """``n`` invoices, all due (stage 7…42), one client each."""
    out = []
    for i in range(n):
        days = 7 + (i * 7) % 42
        out.append(
            {
                "row": i + 2,
                "invoice_id": f"{prefix}-{i:04d}",
                "client_name": f"Client {i}",
                "client_email": f"ap{i}@client{i % 50}.example.com",
                "amount": "100.00",
                "due_date": (TODAY - dt.timedelta(days=days)).isoformat(),
                "status": "Overdue",
            }
        )
    return out


def env_for(tmp: Path, database_url: str | None, **extra: str) -> dict[str, str]:
    env = {
        "API_KEYS": KEY,
        "MAILDIR_PATH": str(tmp / "Maildir"),
        "DATABASE_URL": database_url or f"sqlite:///{tmp / 'ledger.db'}",
        "SENDS_LOG": str(tmp / "sends.csv"),
        "TIMEZONE": "UTC",
        "LOG_LEVEL": "WARNING",
    }
    env.update(extra)
    return env


def post(base: str, body: dict[str, Any], timeout: float = 120) -> requests.Response:
    return requests.post(base + "/v1/drafts", json=body, headers=AUTH, timeout=timeout)


def maildir_keys(tmp: Path) -> list[str]:
    keys = []
    for path in (tmp / "Maildir" / "new").iterdir():
        msg = message_from_bytes(path.read_bytes(), policy=policy.default)
        assert msg["To"] and msg["From"] and msg["Subject"] and msg["Message-ID"]
        keys.append(msg["X-Invoice-Collector-Key"])
    return keys


def database_urls() -> list[Any]:
    pg = os.environ.get("TEST_DATABASE_URL")
    return [
        pytest.param(None, id="sqlite"),
        pytest.param(
            pg,
            id="postgresql",
            marks=pytest.mark.postgres,
        ),
    ]


@pytest.mark.parametrize("database_url", database_urls())
def test_sixteen_identical_requests_on_four_workers_make_one_draft_per_invoice(
    tmp_path: Path, database_url: str | None
) -> None:
    scope = f"sheet-{uuid.uuid4().hex[:8]}"  # a shared PostgreSQL keeps earlier runs' keys
    body = {"today": TODAY.isoformat(), "scope": scope, "invoices": rows(60)}
    with gunicorn(env_for(tmp_path, database_url), workers=4, log=tmp_path / "g.log") as server:
        barrier = threading.Barrier(16)

        def fire(_: int) -> requests.Response:
            barrier.wait()
            return post(server.base, body)

        with ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(fire, range(16)))
    assert [r.status_code for r in responses] == [200] * 16
    keys = maildir_keys(tmp_path)
    assert len(keys) == 60 and len(set(keys)) == 60
    drafted: Counter[str] = Counter()
    for r in responses:
        for row in r.json()["rows"]:
            assert row["reason"] in {"drafted", "duplicate"}
            drafted[row["invoice_id"]] += row["reason"] == "drafted"
    assert set(drafted.values()) == {1}  # each invoice reported drafted by exactly one caller
    # A later identical call returns every draft's id for write-back, creating nothing.
    with gunicorn(env_for(tmp_path, database_url), workers=1, log=tmp_path / "g2.log") as server:
        again = post(server.base, body).json()
    assert {r["reason"] for r in again["rows"]} == {"duplicate"}
    assert all(r["draft_id"] and r["writeback"]["last_stage_sent"] for r in again["rows"])
    assert len(maildir_keys(tmp_path)) == 60


@pytest.mark.parametrize("database_url", database_urls())
def test_sixteen_identical_calls_make_one_statement_for_a_client_with_five_due_invoices(
    tmp_path: Path, database_url: str | None
) -> None:
    scope = f"sheet-{uuid.uuid4().hex[:8]}"
    invoices = rows(5, prefix="ST")
    for i, row in enumerate(invoices):  # one client, five invoices due at different stages
        row |= {"client_name": "Big Client", "client_email": "ap@bigclient.example.com"}
        row["due_date"] = (TODAY - dt.timedelta(days=8 + 7 * i)).isoformat()
    body = {"today": TODAY.isoformat(), "scope": scope, "invoices": invoices}
    env = env_for(tmp_path, database_url, GROUP_BY_CLIENT="true")
    with gunicorn(env, workers=4, log=tmp_path / "g.log") as server:
        barrier = threading.Barrier(16)

        def fire(_: int) -> requests.Response:
            barrier.wait()
            return post(server.base, body)

        with ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(fire, range(16)))
    assert [r.status_code for r in responses] == [200] * 16
    files = list((tmp_path / "Maildir" / "new").iterdir())
    assert len(files) == 1  # exactly one statement draft
    text = files[0].read_text(encoding="utf-8", errors="replace")
    assert all(f"ST-{i:04d}" in text for i in range(5))
    drafted = [r for resp in responses for r in resp.json()["rows"] if r["reason"] == "drafted"]
    assert sorted(r["invoice_id"] for r in drafted) == [f"ST-{i:04d}" for i in range(5)]
    assert len({r["draft_id"] for r in drafted}) == 1
    # Five rows written back, each at its own stage.
    assert sorted(r["writeback"]["last_stage_sent"] for r in drafted) == [7, 14, 21, 28, 35]


def test_kill_9_mid_run_then_rerun_leaves_exactly_one_draft_per_invoice(tmp_path: Path) -> None:
    invoices = rows(500, prefix="K")
    body = {"today": TODAY.isoformat(), "scope": "crash-sheet", "invoices": invoices}
    with running_gmail_emulator(tokens=[TOKEN], quota_units=10_000_000, latency_s=0.004) as (
        emu,
        gmail_url,
    ):
        env = env_for(
            tmp_path,
            None,
            DRAFTS_BACKEND="gmail",
            GMAIL_SENDER="ar@acme.example.com",
            GMAIL_API_ENDPOINT=gmail_url,
            GMAIL_DRAFTS_PER_SECOND="1000",
            RESERVATION_LEASE_SECONDS="3",
        )
        server = start(env, workers=2, log=tmp_path / "g.log")
        worker = threading.Thread(target=lambda: _swallow(post, server.base, body), daemon=True)
        worker.start()
        deadline = time.monotonic() + 60
        while len(emu.drafts) < 120 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.kill_hard()
        crashed_at = len(emu.drafts)
        assert 0 < crashed_at < 500, "the crash must land mid-run"
        with gunicorn(env, workers=2, log=tmp_path / "g2.log") as server:
            results: dict[str, dict[str, Any]] = {}
            for _ in range(10):
                for row in post(server.base, body).json()["rows"]:
                    if row["reason"] in {"drafted", "duplicate"} and row.get("draft_id"):
                        results[row["invoice_id"]] = row
                if len(results) == 500:
                    break
                time.sleep(1.5)  # reservations of the killed workers expire after 3 s
        keys = [d.key for d in emu.drafts]
    assert len(results) == 500
    assert Counter(keys).most_common(1)[0][1] == 1, "no invoice may get two drafts"
    assert set(keys) == {f"crash-sheet/{r['invoice_id']}/{_stage(r)}" for r in invoices}


def test_twenty_percent_failed_creates_end_in_one_draft_each_or_retryable(tmp_path: Path) -> None:
    body = {"today": TODAY.isoformat(), "scope": "faulty", "invoices": rows(150, prefix="F")}
    with running_gmail_emulator(tokens=[TOKEN], quota_units=10_000_000, seed=3) as (emu, url):
        emu.faults.set_rate("500", 0.1, method="drafts.create")
        emu.faults.set_rate("429", 0.1, method="drafts.create")
        env = env_for(
            tmp_path,
            None,
            DRAFTS_BACKEND="gmail",
            GMAIL_SENDER="ar@acme.example.com",
            GMAIL_API_ENDPOINT=url,
            GMAIL_DRAFTS_PER_SECOND="1000",
            GMAIL_RETRY_SECONDS="5",
            RESERVATION_LEASE_SECONDS="2",
        )
        with gunicorn(env, workers=2, log=tmp_path / "g.log") as server:
            first = post(server.base, body)
            assert first.status_code == 200
            states = Counter(
                (r["action"], r["reason"], r.get("retryable")) for r in first.json()["rows"]
            )
            # A 500 may have stored the draft: pending until a call after the lease looks.
            assert set(states) <= {
                ("draft", "drafted", None),
                ("error", "draft_failed", True),
                ("skip", "pending", True),
            }
            assert states["skip", "pending", True] > 0
            emu.faults.clear()
            time.sleep(2.5)  # the lease
            second = post(server.base, body)
            assert second.status_code == 200
            assert {r["reason"] for r in second.json()["rows"]} <= {"drafted", "duplicate"}
        keys = [d.key for d in emu.drafts]
        for stored in emu.drafts:
            msg = message_from_bytes(stored.raw, policy=policy.default)
            assert msg["From"].addresses[0].addr_spec == "ar@acme.example.com"
            assert msg["To"]
    assert len(keys) == 150 and len(set(keys)) == 150


def test_lagging_search_and_500s_after_storing_end_in_one_draft_per_invoice(
    tmp_path: Path,
) -> None:
    """Gmail's search 3 s behind its store, 20% of creates answering 500 after storing: 200
    invoices, four concurrent calls on four workers, then again after the lease → exactly one
    draft per invoice, none lost. The lease (2 s) is shorter than the lag, and the repeats send
    the rows newest first: only reading the newest drafts' own headers finds the last ones."""
    invoices = rows(200, prefix="L")
    body: dict[str, Any] = {"today": TODAY.isoformat(), "scope": "lagging", "invoices": invoices}
    with running_gmail_emulator(tokens=[TOKEN], search_lag_s=3, seed=5) as (emu, url):
        emu.faults.set_rate(Fault.stored_then_error(500), 0.2, method="drafts.create")
        env = env_for(
            tmp_path,
            None,
            DRAFTS_BACKEND="gmail",
            GMAIL_SENDER="ar@acme.example.com",
            GMAIL_API_ENDPOINT=url,
            GMAIL_DRAFTS_PER_SECOND="24",
            RESERVATION_LEASE_SECONDS="2",
        )
        rounds: list[Counter[str]] = []
        with gunicorn(env, workers=4, log=tmp_path / "g.log") as server:
            for _ in range(6):
                with ThreadPoolExecutor(4) as pool:
                    responses = list(pool.map(post, [server.base] * 4, [body] * 4))
                assert [r.status_code for r in responses] == [200] * 4
                answered = [row for r in responses for row in r.json()["rows"]]
                rounds.append(Counter(row["reason"] for row in answered))
                if "pending" not in rounds[-1]:
                    break
                time.sleep(2.05)  # past the lease: the next calls look the pending drafts up
                body = {**body, "invoices": body["invoices"][::-1]}
            final = post(server.base, body).json()["rows"]
        stored = {d.key: d.draft_id for d in emu.drafts}
        keys = [d.key for d in emu.drafts]
    assert len(keys) == len(stored) == 200, "one draft per invoice"
    assert set(rounds[0]) <= {"drafted", "duplicate", "pending"} and rounds[0]["pending"] > 0
    assert emu.faults.injected["error_after"] >= 20  # the faults really happened
    key_of = {r["invoice_id"]: f"lagging/{r['invoice_id']}/{_stage(r)}" for r in invoices}
    assert set(key_of.values()) == set(stored)
    for row in final:  # every row knows its invoice's one draft
        assert row["draft_id"] == stored[key_of[row["invoice_id"]]]


def _stage(row: dict[str, Any]) -> int:
    days = (TODAY - dt.date.fromisoformat(row["due_date"])).days
    return max(s for s in (7, 14, 21, 28, 35, 42) if s <= days)


def _swallow(fn: Any, *args: Any) -> None:
    with contextlib.suppress(requests.RequestException):  # the server is killed under it
        fn(*args)
