"""Secret hygiene: after a full flow, no token or key in any log line, table row or file.

The real API runs under gunicorn with every logger at DEBUG and *no* redaction (so the test
proves the code never logs a secret, rather than that the filter masks it), access log on.
The flow: plan; drafts into the Gmail emulator with the sidebar user's recognisable access
token; the same drafts again (idempotent); a refused API key and a refused Gmail token; a
headless run over a copy of the example sheet with the server's own (refreshed) token.
Afterwards every secret is searched for in gunicorn's output, every row of every table of
the SQLite ledger and every file under the temp dir; email bodies in the logs and tables.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from service.config import PROJECT_ROOT
from tests.e2e.servers import gunicorn
from tests.emulators.gmail import GmailEmulator, running_gmail_emulator

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

OWNER = "owner@example.com"
API_KEY = "icak_live_HYGIENE_API_KEY_7f3a9c1e5b"
SIDEBAR_TOKEN = "ya29.HYGIENE_SIDEBAR_TOKEN_b41d8e2f0a"
WRONG_KEY = "icak_live_HYGIENE_WRONG_KEY_0c9d"
WRONG_GMAIL_TOKEN = "ya29.HYGIENE_REVOKED_TOKEN_5e6f"
SERVER_REFRESH = "1//HYGIENE_SERVER_REFRESH_TOKEN_a8b7c6"
SERVER_ACCESS = "ya29.HYGIENE_SERVER_ACCESS_TOKEN_d5e4f3"
SERVER_CLIENT_SECRET = "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"
TODAY = "2026-11-24"
# Only the token file may hold the server's own credentials: that is its job.
TOKEN_FILE_SECRETS = (SERVER_ACCESS, SERVER_REFRESH, SERVER_CLIENT_SECRET)
SECRETS = (API_KEY, SIDEBAR_TOKEN, WRONG_KEY, WRONG_GMAIL_TOKEN, *TOKEN_FILE_SECRETS)

GUNICORN_CONF = """
import logging, sys

def post_worker_init(worker):
    # Everything at DEBUG, unredacted: what a careless handler would write.
    logging.basicConfig(
        level=logging.DEBUG, stream=sys.stderr, force=True,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
"""


def rows(n: int) -> list[dict[str, Any]]:
    """Overdue invoices whose ids and client names make their rendered bodies recognisable."""
    return [
        {
            "row": i + 2,
            "invoice_id": f"HYG-{i:03d}",
            "client_name": f"Hygiene Client {i:03d}",
            "client_email": f"ap{i:03d}@client.example.com",
            "amount": f"{1000 + i}.50",
            "currency": "USD",
            "due_date": "2026-10-01",
            "status": "Overdue",
        }
        for i in range(n)
    ]


@pytest.fixture
def gmail() -> Iterator[tuple[GmailEmulator, str]]:
    tokens = {SIDEBAR_TOKEN: OWNER, SERVER_ACCESS: OWNER}
    with running_gmail_emulator(tokens=tokens) as served:
        yield served


def table_rows(db: Path) -> list[tuple[str, str]]:
    """(table, row as text) for every row of every table."""
    found = []
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):  # noqa: S608 - names from sqlite
                found.append((table, json.dumps(row, default=str, ensure_ascii=False)))
    return found


def body_lines(bodies: list[str]) -> set[str]:
    """The distinctive lines of the rendered bodies (those naming an invoice or a client)."""
    return {
        line.strip()
        for body in bodies
        for line in body.splitlines()
        if len(line.strip()) >= 20 and ("HYG-" in line or "Hygiene Client" in line)
    }


def test_no_secret_or_email_body_is_left_in_logs_tables_or_files(
    tmp_path: Path, gmail: tuple[GmailEmulator, str]
) -> None:
    emulator, gmail_url = gmail
    var = tmp_path / "var"
    var.mkdir()
    sheet = var / "invoices.csv"
    shutil.copy(PROJECT_ROOT / "examples" / "invoices.csv", sheet)
    token_file = var / "token.json"
    token_file.write_text(
        json.dumps(
            {
                # google-auth always refreshes at Google's own token_uri, so the stored
                # access token is a fresh one: no refresh needed during the test.
                "token": SERVER_ACCESS,
                "expiry": "2099-01-01T00:00:00Z",
                "refresh_token": SERVER_REFRESH,
                "client_id": "hygiene-client.apps.googleusercontent.com",
                "client_secret": SERVER_CLIENT_SECRET,
                "token_uri": gmail_url + "token",
            }
        )
    )
    conf = tmp_path / "gunicorn_conf.py"
    conf.write_text(GUNICORN_CONF)
    db = var / "ledger.db"
    sends_log = var / "logs" / "sends.csv"
    env = {
        "API_KEYS": API_KEY,
        "DATABASE_URL": f"sqlite:///{db}",
        "MAILDIR_PATH": str(var / "Maildir"),
        "SENDS_LOG": str(sends_log),
        "INVOICES_FILE": str(sheet),
        "DRAFTS_BACKEND": "gmail",
        "GMAIL_SENDER": OWNER,
        "GMAIL_API_ENDPOINT": gmail_url,
        "GOOGLE_TOKEN_FILE": str(token_file),
        "GMAIL_RETRY_SECONDS": "5",
        "LOG_LEVEL": "DEBUG",
        "GUNICORN_CMD_ARGS": f"--config {conf} --access-logfile - --log-level debug",
    }
    log = tmp_path / "gunicorn.log"
    auth = {"Authorization": f"Bearer {API_KEY}"}
    invoices = rows(6)
    with gunicorn(env, workers=2, log=log) as server:
        base = server.base
        plan = requests.post(
            f"{base}/v1/plan",
            json={"today": TODAY, "invoices": invoices},
            headers={**auth, "X-Google-Access-Token": SIDEBAR_TOKEN},
            timeout=30,
        )
        assert plan.status_code == 200, plan.text
        bodies = [r["body"] for r in plan.json()["rows"] if r.get("body")]
        assert len(bodies) == len(invoices)

        for _ in range(2):  # the second is answered from the ledger
            drafts = requests.post(
                f"{base}/v1/drafts",
                json={"today": TODAY, "scope": "hygiene-sheet", "invoices": invoices},
                headers={
                    **auth,
                    "X-Google-Access-Token": SIDEBAR_TOKEN,
                    "Idempotency-Key": "hygiene-1",
                },
                timeout=60,
            )
            assert drafts.status_code == 200, drafts.text
        assert len(emulator.drafts) == len(invoices)

        refused = requests.post(
            f"{base}/v1/plan",
            json={"invoices": invoices},
            headers={"Authorization": f"Bearer {WRONG_KEY}"},
            timeout=30,
        )
        assert refused.status_code == 401
        revoked = requests.post(
            f"{base}/v1/drafts",
            json={"today": TODAY, "scope": "hygiene-other", "invoices": invoices},
            headers={**auth, "X-Google-Access-Token": WRONG_GMAIL_TOKEN},
            timeout=60,
        )
        assert revoked.status_code in (200, 401), revoked.text  # 401 or per-row errors
        assert WRONG_GMAIL_TOKEN not in revoked.text

        started = requests.post(
            f"{base}/v1/runs",
            json={"today": TODAY, "dry_run": False, "force": True},
            headers=auth,
            timeout=30,
        )
        assert started.status_code == 202, started.text
        run_url = f"{base}/v1/runs/{started.json()['id']}"
        deadline = time.monotonic() + 60
        while True:
            run = requests.get(run_url, headers=auth, timeout=30).json()
            if run["state"] in ("done", "failed") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert run["state"] == "done", run
        assert run["summary"].get("drafted", 0) > 0, run["summary"]
        run_bodies = [d.message().get_body(("plain",)) for d in emulator.drafts]
        bodies += [str(b.get_content()) for b in run_bodies if b is not None]
    logs = log.read_text(encoding="utf-8", errors="replace")
    assert "POST /v1/drafts" in logs  # the access log was captured
    assert "DEBUG" in logs  # and the service's own debug lines
    markers = body_lines(bodies)
    assert markers

    for secret in SECRETS:
        leaks = [line for line in logs.splitlines() if secret in line]
        assert not leaks, f"{secret} appears in the log: {leaks[:3]}"
    for line in markers:
        assert line not in logs, f"an email body line appears in the log: {line!r}"

    db_rows = table_rows(db)
    assert {table for table, _ in db_rows} >= {"draft_ledger"}
    for table, text in db_rows:
        for secret in SECRETS:
            assert secret not in text, f"{secret} appears in table {table}"
        for line in markers:
            assert line not in text, f"an email body line appears in table {table}: {line!r}"

    assert sends_log.exists()
    sends = sends_log.read_text()
    for line in markers:
        assert line not in sends, "an email body line appears in sends.csv"

    scanned = 0
    for path in tmp_path.rglob("*"):
        if not path.is_file():
            continue
        scanned += 1
        content = path.read_bytes().decode("utf-8", errors="replace")
        allowed = TOKEN_FILE_SECRETS if path == token_file else ()
        for secret in SECRETS:
            if secret not in allowed:
                assert secret not in content, f"{secret} appears in {path.relative_to(tmp_path)}"
    assert scanned >= 4  # the log, the ledger, sends.csv, the sheet at least
