"""A team on one sheet (issue 20): Alice drafts stage 7; Bob's Generate answers duplicate and
says whose Drafts hold it, instead of a link he cannot open."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from service.api.app import create_app
from service.bootstrap import build_services
from service.config import Settings
from tests.conftest import API_KEY, invoice_row
from tests.emulators.gmail import GmailEmulator, running_gmail_emulator

ALICE, BOB = "alice@firm.example.com", "bob@firm.example.com"
TOKENS = {"ya29.alice": ALICE, "ya29.bob": BOB}


@pytest.fixture
def gmail() -> Iterator[tuple[GmailEmulator, str]]:
    with running_gmail_emulator(tokens=TOKENS) as served:
        yield served


def test_bob_learns_that_alice_drafted_it_and_creates_nothing(
    make_settings: Callable[..., Settings], gmail: tuple[GmailEmulator, str]
) -> None:
    emulator, url = gmail
    client = create_app(
        services=build_services(make_settings(DRAFTS_BACKEND="gmail", GMAIL_API_ENDPOINT=url))
    ).test_client()
    body = {"today": "2025-01-22", "scope": "sheet-team", "invoices": [invoice_row()]}

    def generate(token: str) -> dict[str, object]:
        headers = {"Authorization": f"Bearer {API_KEY}", "X-Google-Access-Token": token}
        response = client.post("/v1/drafts", json=body, headers=headers)
        assert response.status_code == 200, response.get_json()
        row: dict[str, object] = response.get_json()["rows"][0]
        return row

    alice = generate("ya29.alice")
    assert alice["reason"] == "drafted" and alice["draft_url"]
    bob = generate("ya29.bob")

    assert bob["reason"] == "duplicate"
    assert bob["drafted_by"] == ALICE
    assert bob["draft_url"] is None
    assert f"by {ALICE} on 2025-01-22" in str(bob["message"])
    assert emulator.drafts_for(BOB) == [] and len(emulator.drafts_for(ALICE)) == 1
    # Alice herself, asking again, gets her own link back and no "drafted by".
    again = generate("ya29.alice")
    assert again["reason"] == "duplicate" and "drafted_by" not in again
    assert again["draft_url"] == alice["draft_url"]
