"""GmailSink against the Gmail emulator: creation, threading, adoption, backoff, exactly-once."""

from __future__ import annotations

import email
import email.policy
import itertools
import logging
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from typing import Any

import pytest
from google.oauth2.credentials import Credentials

from service.adapters.gmail import GmailSink
from service.adapters.google_api import Pacer
from service.adapters.http_retry import RetryPolicy
from service.ports import (
    AuthorizationError,
    DraftKey,
    OutgoingDraft,
    SinkError,
    ThreadRef,
)
from tests.emulators.gmail import Fault, GmailEmulator, running_gmail_emulator

pytestmark = pytest.mark.timeout(30)

TOKEN = "sink-token"
OWNER = "owner@example.com"
SECRET_BODY = "The balance of 1,234.50 is overdue"
FAST = RetryPolicy(max_attempts=12, max_total_s=15.0, base_delay_s=0.01, max_delay_s=0.05)
_mailboxes = itertools.count()
Served = tuple[GmailEmulator, str]


def outgoing(
    invoice_id: str = "INV-1",
    stage: int = 7,
    *,
    to: str = "client@example.com",
    subject: str | None = None,
    thread: ThreadRef | None = None,
) -> OutgoingDraft:
    """A rendered reminder, built with the stdlib as the service does."""
    key = DraftKey("sheet-1", invoice_id, stage)
    subject = subject or f"Invoice {invoice_id} is overdue"
    rfc_id = f"<{invoice_id}.{stage}@invoice-collector.example>"
    msg = EmailMessage()
    msg["From"] = OWNER
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = rfc_id
    msg["X-Invoice-Collector-Key"] = key.header_value()
    if thread is not None and thread.rfc_message_id:
        msg["In-Reply-To"] = thread.rfc_message_id
        msg["References"] = thread.rfc_message_id
    msg.set_content(f"Dear client,\n\n{SECRET_BODY} ({invoice_id}, stage {stage}).\n")
    return OutgoingDraft(
        key=key,
        to=(to,),
        subject=subject,
        raw=msg.as_bytes(),
        rfc_message_id=rfc_id,
        thread=thread,
    )


def make_sink(base_url: str, credentials: Any = TOKEN, **options: Any) -> GmailSink:
    """A sink with its own pacer (unique mailbox) and fast retries unless told otherwise."""
    options.setdefault("policy", FAST)
    options.setdefault("mailbox", f"test-{next(_mailboxes)}@example.com")
    return GmailSink(credentials, endpoint=base_url, **options)


def server_credentials(base_url: str, refresh_token: str) -> Credentials:
    """A refreshable credential whose token endpoint is the emulator's; the token is stale."""
    return Credentials(  # type: ignore[no-untyped-call]
        token="expired",
        refresh_token=refresh_token,
        token_uri=base_url + "token",
        client_id="client",
        client_secret="secret",
    )


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with running_gmail_emulator(tokens={TOKEN: OWNER}, seed=1) as served:
        yield served


@pytest.fixture
def gmail(served: Served) -> Served:
    """One server per module (shutting one down takes ~0.5 s); a fresh state per test."""
    served[0].reset()
    return served


def keys_stored(emulator: GmailEmulator) -> Counter[str | None]:
    return Counter(d.key for d in emulator.drafts)


# ---------------------------------------------------------------------------------------------
# create
# ---------------------------------------------------------------------------------------------
def test_create_stores_the_raw_message_and_returns_gmails_ids(gmail: Served) -> None:
    emulator, base_url = gmail
    draft = outgoing()

    created = make_sink(base_url, mailbox=OWNER).create(draft)

    [stored] = emulator.drafts
    assert created.draft_id == stored.draft_id
    assert created.message_id == stored.message_id
    assert created.thread_id == stored.thread_id
    assert created.rfc_message_id == draft.rfc_message_id
    assert created.url == (
        "https://mail.google.com/mail/?authuser=owner%40example.com"
        f"#drafts?compose={stored.message_id}"
    )
    assert stored.raw == draft.raw
    parsed = email.message_from_bytes(stored.raw, policy=email.policy.default)
    assert parsed["X-Invoice-Collector-Key"] == "sheet-1/INV-1/7"
    body = parsed.get_body()
    assert body is not None
    assert SECRET_BODY in body.get_content()
    assert emulator.calls == {"drafts.create": 1}


def test_later_stage_is_created_in_the_earlier_reminders_thread(gmail: Served) -> None:
    _, base_url = gmail
    sink = make_sink(base_url)
    first = sink.create(outgoing(stage=7))

    follow_up = sink.create(
        outgoing(
            stage=14,
            subject="Re: Invoice INV-1 is overdue",
            thread=ThreadRef(first.thread_id, first.rfc_message_id, "Invoice INV-1 is overdue"),
        )
    )

    assert follow_up.thread_id == first.thread_id
    assert follow_up.draft_id != first.draft_id


def test_follow_up_whose_thread_was_deleted_starts_a_new_thread(gmail: Served) -> None:
    emulator, base_url = gmail
    gone = ThreadRef("18cffffffffffff0", "<INV-1.7@invoice-collector.example>")

    created = make_sink(base_url).create(outgoing(stage=14, thread=gone))

    assert created.thread_id == created.message_id
    assert len(emulator.drafts) == 1
    assert emulator.calls["drafts.create"] == 2  # 404 on the thread, then without it


def test_bad_message_is_not_retried(gmail: Served) -> None:
    emulator, base_url = gmail
    emulator.faults.push(Fault("error", status=400, reason="invalidArgument"))

    with pytest.raises(SinkError) as caught:
        make_sink(base_url).create(outgoing())

    assert caught.value.retryable is False
    assert not isinstance(caught.value, AuthorizationError)
    assert emulator.calls["drafts.create"] == 1


# ---------------------------------------------------------------------------------------------
# find
# ---------------------------------------------------------------------------------------------
def test_find_adopts_the_draft_carrying_the_key_header(gmail: Served) -> None:
    emulator, base_url = gmail
    draft = outgoing()
    emulator.add_draft(draft.raw, user=OWNER)

    found = make_sink(base_url).find(draft)

    assert found is not None
    assert found.draft_id == emulator.drafts[0].draft_id
    assert found.rfc_message_id == draft.rfc_message_id
    assert emulator.calls == {"drafts.list": 1, "drafts.get": 1}


def test_find_ignores_a_same_subject_draft_for_another_key(gmail: Served) -> None:
    emulator, base_url = gmail
    other_stage = outgoing(stage=14)
    emulator.add_draft(other_stage.raw, user=OWNER)
    wanted = outgoing(stage=7)

    assert make_sink(base_url).find(wanted) is None
    assert emulator.calls["drafts.get"] == 1  # looked, rejected by the key header


def test_find_returns_none_when_nothing_matches(gmail: Served) -> None:
    emulator, base_url = gmail
    emulator.add_draft(outgoing(to="someone@else.example").raw, user=OWNER)

    assert make_sink(base_url).find(outgoing()) is None
    assert emulator.calls == {"drafts.list": 1}


def test_find_searches_past_the_first_page_of_candidates(gmail: Served) -> None:
    emulator, base_url = gmail
    wanted = outgoing(stage=7)
    emulator.add_draft(wanted.raw, user=OWNER)
    for i in range(30):  # newer look-alikes (same recipient and subject, other keys)
        emulator.add_draft(outgoing(invoice_id="INV-1", stage=100 + i).raw, user=OWNER)

    found = make_sink(base_url, max_find_candidates=40).find(wanted)

    assert found is not None
    assert found.draft_id == emulator.drafts[0].draft_id
    assert emulator.calls["drafts.list"] == 2


# ---------------------------------------------------------------------------------------------
# Exactly-once under faults
# ---------------------------------------------------------------------------------------------
def test_dropped_connection_after_create_never_doubles_a_draft(gmail: Served) -> None:
    emulator, base_url = gmail
    emulator.faults.push(Fault.created_then_drop(), method="drafts.create")

    created = make_sink(base_url).create(outgoing())

    [stored] = emulator.drafts
    assert created.draft_id == stored.draft_id
    assert emulator.calls == {"drafts.create": 1, "drafts.list": 1, "drafts.get": 1}


def test_dropped_connection_before_create_creates_once_after_looking(gmail: Served) -> None:
    emulator, base_url = gmail
    emulator.faults.push(Fault.drop(), method="drafts.create")

    created = make_sink(base_url).create(outgoing())

    assert [d.draft_id for d in emulator.drafts] == [created.draft_id]
    assert emulator.calls == {"drafts.create": 2, "drafts.list": 1}


def test_server_error_after_storing_is_adopted_not_repeated(gmail: Served) -> None:
    emulator, base_url = gmail
    emulator.faults.push(Fault.created_then_drop(), "500", "503", method="drafts.create")

    make_sink(base_url).create(outgoing())

    assert len(emulator.drafts) == 1


def test_backoff_under_20_percent_faults_creates_every_draft_exactly_once(gmail: Served) -> None:
    emulator, base_url = gmail
    creates = {"drafts.create"}
    emulator.faults.set_rate(Fault.server_error(500), 0.08, method=creates)
    emulator.faults.set_rate(Fault.rate_limited(retry_after_s=0), 0.06, method=creates)
    emulator.faults.set_rate(Fault.user_rate_limited(), 0.02, method=creates)
    emulator.faults.set_rate(Fault.created_then_drop(), 0.02, method=creates)
    emulator.faults.set_rate(Fault.drop(), 0.02, method=creates)
    emulator.faults.set_rate("503", 0.05, method={"drafts.list", "drafts.get"})
    sink = make_sink(base_url)
    drafts = [outgoing(invoice_id=f"INV-{i}") for i in range(80)]

    with ThreadPoolExecutor(max_workers=6) as pool:
        created = list(pool.map(sink.create, drafts))

    assert keys_stored(emulator) == Counter(d.key.header_value() for d in drafts)
    assert {c.draft_id for c in created} == {d.draft_id for d in emulator.drafts}
    assert sum(emulator.faults.injected.values()) >= 10  # the faults really happened
    for stored in emulator.drafts:
        parsed = email.message_from_bytes(stored.raw, policy=email.policy.default)
        assert parsed["X-Invoice-Collector-Key"] == stored.key


def test_rate_limit_waits_at_least_retry_after(gmail: Served) -> None:
    emulator, base_url = gmail
    emulator.faults.push(Fault.rate_limited(retry_after_s=7), method="drafts.create")
    slept: list[float] = []

    make_sink(base_url, sleep=slept.append).create(outgoing())

    assert slept and slept[0] >= 7
    assert emulator.calls == {"drafts.create": 2}  # a 429 stores nothing: no search needed


def test_persistent_outage_gives_up_with_a_retryable_error_and_no_secrets(
    gmail: Served, caplog: pytest.LogCaptureFixture
) -> None:
    emulator, base_url = gmail
    emulator.faults.set_rate("503", 1.0, method="drafts.create")
    caplog.set_level(logging.DEBUG)
    policy = RetryPolicy(max_attempts=4, max_total_s=5, base_delay_s=0.01, max_delay_s=0.02)

    with pytest.raises(SinkError) as caught:
        make_sink(base_url, policy=policy).create(outgoing())

    assert caught.value.retryable is True
    assert caught.value.code == "gmail_outcome_unknown"  # a 5xx: Gmail may hold the draft
    assert emulator.calls["drafts.create"] == 4
    assert emulator.drafts == []
    everything = str(caught.value) + caplog.text
    assert TOKEN not in everything
    assert SECRET_BODY not in everything


def test_total_retry_time_is_bounded(gmail: Served) -> None:
    emulator, base_url = gmail
    emulator.faults.set_rate(Fault.rate_limited(retry_after_s=1), 1.0, method="drafts.create")
    policy = RetryPolicy(max_attempts=100, max_total_s=1.5, base_delay_s=0.01)
    started = time.monotonic()

    with pytest.raises(SinkError) as caught:
        make_sink(base_url, policy=policy).create(outgoing())

    assert caught.value.retryable is True
    assert caught.value.code == "gmail_unavailable"  # a 429 stores nothing
    assert time.monotonic() - started < 2.5


# ---------------------------------------------------------------------------------------------
# Authorisation
# ---------------------------------------------------------------------------------------------
def test_unknown_bare_token_raises_authorization_error(gmail: Served) -> None:
    _, base_url = gmail
    with pytest.raises(AuthorizationError) as caught:
        make_sink(base_url, credentials="revoked-token").create(outgoing())
    assert caught.value.retryable is False
    assert "revoked-token" not in str(caught.value)


def test_401_that_survives_a_refresh_raises_authorization_error() -> None:
    with running_gmail_emulator(tokens={TOKEN: OWNER}, refresh_tokens={"rt": "still-invalid"}) as (
        emulator,
        base_url,
    ):
        creds = server_credentials(base_url, refresh_token="rt")
        with pytest.raises(AuthorizationError):
            make_sink(base_url, credentials=creds).create(outgoing())
        assert emulator.drafts == []


def test_revoked_refresh_token_raises_authorization_error() -> None:
    with running_gmail_emulator(tokens={TOKEN: OWNER}) as (_, base_url):
        creds = server_credentials(base_url, refresh_token="revoked")
        with pytest.raises(AuthorizationError):
            make_sink(base_url, credentials=creds).find(outgoing())


def test_server_credentials_refresh_and_carry_on() -> None:
    with running_gmail_emulator(tokens={"fresh": OWNER}, refresh_tokens={"rt": "fresh"}) as (
        emulator,
        base_url,
    ):
        creds = server_credentials(base_url, refresh_token="rt")
        make_sink(base_url, credentials=creds).create(outgoing())
        assert len(emulator.drafts) == 1


# ---------------------------------------------------------------------------------------------
# Pacing and quota
# ---------------------------------------------------------------------------------------------
def test_default_pace_stays_inside_gmails_quota_without_a_single_429() -> None:
    # Real-sized quota: 15,000 units per minute; the sink's default is 25 drafts/s.
    with running_gmail_emulator(tokens={TOKEN: OWNER}) as (emulator, base_url):
        sink = make_sink(base_url, policy=RetryPolicy(max_attempts=1))
        drafts = [outgoing(invoice_id=f"INV-{i}") for i in range(75)]
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(sink.create, drafts))
        elapsed = time.monotonic() - started

    assert len(emulator.drafts) == 75
    # 25 drafts of burst, then 50 at 25/s: about 2 s.
    assert 1.8 <= elapsed < 6
    assert 75 / elapsed <= 40


def test_sink_paced_too_fast_recovers_from_quota_429s_exactly_once() -> None:
    # A minute shrunk to a second: 250 units/s, i.e. 25 drafts/s; the sink tries 200/s.
    with running_gmail_emulator(tokens={TOKEN: OWNER}, quota_units=250, quota_window_s=1.0) as (
        emulator,
        base_url,
    ):
        sink = make_sink(base_url, drafts_per_second=200)
        drafts = [outgoing(invoice_id=f"INV-{i}") for i in range(50)]
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(sink.create, drafts))

    assert keys_stored(emulator) == Counter(d.key.header_value() for d in drafts)
    assert emulator.calls["drafts.create"] > 50  # some were refused with 429 and retried


def test_pacer_is_shared_by_every_sink_of_a_mailbox(gmail: Served) -> None:
    _, base_url = gmail
    one = make_sink(base_url, mailbox="shared@example.com", drafts_per_second=7)
    two = make_sink(base_url, mailbox="shared@example.com", drafts_per_second=7)
    assert one._pacer is two._pacer


def test_pacer_spaces_units_to_its_rate() -> None:
    now = [0.0]
    pacer = Pacer(100, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    for _ in range(30):
        pacer.acquire(10)
    assert now[0] == pytest.approx(2.0)  # 100 units of burst, then 200 at 100/s
