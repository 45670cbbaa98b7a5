"""Drafts never sent (issue 19), through /v1/drafts, against the Gmail emulator and a Maildir:
a reminder left in Drafts holds back the next stage; once sent, the next stage is drafted."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from service.api.app import create_app
from service.bootstrap import build_services
from service.config import Settings
from tests.conftest import API_KEY, invoice_row
from tests.emulators.gmail import GmailEmulator, running_gmail_emulator

TOKEN = "ya29.unsent-test-token"
OWNER = "owner@example.com"
DUE = dt.date(2024, 12, 31)  # stage 7 on Tue 7 Jan; ten days later is Fri 17 Jan


@pytest.fixture
def emulator() -> Iterator[tuple[GmailEmulator, str]]:
    with running_gmail_emulator(tokens={TOKEN: OWNER}) as served:
        yield served


def _drafts(client: FlaskClient, today: dt.date, stage_sent: int | None = None) -> dict[str, Any]:
    row = invoice_row(due_date=DUE.isoformat())
    if stage_sent is not None:
        row |= {"last_stage_sent": stage_sent, "last_sent_at": (DUE + dt.timedelta(7)).isoformat()}
    headers = {"Authorization": f"Bearer {API_KEY}", "X-Google-Access-Token": TOKEN}
    body = {"today": today.isoformat(), "scope": "sheet-1", "invoices": [row]}
    response = client.post("/v1/drafts", json=body, headers=headers)
    assert response.status_code == 200, response.get_json()
    row_out: dict[str, Any] = response.get_json()["rows"][0]
    return row_out


def _client(settings: Settings) -> FlaskClient:
    return create_app(services=build_services(settings)).test_client()


def test_gmail_a_reminder_left_in_drafts_holds_back_the_next_stage(
    make_settings: Callable[..., Settings], emulator: tuple[GmailEmulator, str]
) -> None:
    gmail, url = emulator
    client = _client(make_settings(DRAFTS_BACKEND="gmail", GMAIL_API_ENDPOINT=url))
    first = _drafts(client, DUE + dt.timedelta(7))
    assert first["reason"] == "drafted" and first["stage"] == 7

    held = _drafts(client, DUE + dt.timedelta(17), stage_sent=7)  # ten days later
    assert held["reason"] == "previous_unsent" and held["action"] == "skip"
    assert held["draft_url"] == first["draft_url"]
    assert held["waiting_since"] == (DUE + dt.timedelta(7)).isoformat()
    assert len(gmail.drafts) == 1

    gmail.send_draft(first["draft_id"])
    sent = _drafts(client, DUE + dt.timedelta(17), stage_sent=7)
    assert sent["reason"] == "drafted" and sent["stage"] == 14
    assert [d.key for d in gmail.drafts] == ["sheet-1/INV-1/14"]


def test_maildir_a_reminder_left_in_the_folder_holds_back_the_next_stage(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    client = _client(make_settings(MAILDIR_PATH=str(tmp_path / "Maildir")))
    first = _drafts(client, DUE + dt.timedelta(7))
    assert first["reason"] == "drafted"

    held = _drafts(client, DUE + dt.timedelta(17), stage_sent=7)
    assert held["reason"] == "previous_unsent"

    # Sent from a mail client: the file leaves the folder (moved to Sent, or deleted).
    files = [p for sub in ("new", "cur") for p in (tmp_path / "Maildir" / sub).glob("*")]
    assert len(files) == 1
    files[0].unlink()
    sent = _drafts(client, DUE + dt.timedelta(17), stage_sent=7)
    assert sent["reason"] == "drafted" and sent["stage"] == 14


def test_unsent_policy_continue_drafts_on_top(
    make_settings: Callable[..., Settings], emulator: tuple[GmailEmulator, str]
) -> None:
    gmail, url = emulator
    settings = make_settings(
        DRAFTS_BACKEND="gmail", GMAIL_API_ENDPOINT=url, UNSENT_POLICY="continue"
    )
    client = _client(settings)
    _drafts(client, DUE + dt.timedelta(7))
    assert _drafts(client, DUE + dt.timedelta(17), stage_sent=7)["reason"] == "drafted"
    assert len(gmail.drafts) == 2
