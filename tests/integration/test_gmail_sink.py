"""GmailSink against the Gmail emulator: creation, threading, adoption, backoff, exactly-once,
and the mailbox's pace kept in a ledger database (SQLite here; PostgreSQL in tests/e2e)."""

from __future__ import annotations

import email
import email.policy
import itertools
import logging
import socket
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from typing import Any

import pytest
from google.oauth2.credentials import Credentials
from sqlalchemy.engine import Engine

from service.adapters.gmail import CREATE_UNITS, GmailSink
from service.adapters.http_retry import RetryPolicy
from service.adapters.ledger_sql import make_engine
from service.adapters.migrate import upgrade
from service.adapters.quota_sql import SqlPacer
from service.ports import (
    AuthorizationError,
    DraftKey,
    OutcomeUnknown,
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


MakeSink = Callable[..., GmailSink]


@pytest.fixture(scope="module")
def ledger_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """The ledger database the mailboxes' pace is kept in."""
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'ledger.db'}")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def make_sink(ledger_engine: Engine) -> MakeSink:
    """Sinks on a mailbox of their own (its own pace), with fast retries unless told otherwise."""

    def make(
        base_url: str, credentials: Any = TOKEN, drafts_per_second: float = 24, **options: Any
    ) -> GmailSink:
        options.setdefault("policy", FAST)
        options.setdefault("mailbox", f"test-{next(_mailboxes)}@example.com")
        options.setdefault("pacer", SqlPacer(ledger_engine, drafts_per_second * CREATE_UNITS))
        return GmailSink(credentials, endpoint=base_url, **options)

    return make


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


def most_in_one_second(emulator: GmailEmulator) -> int:
    """The most drafts Gmail stored within any one second."""
    stamps = sorted(d.internal_date_ms for d in emulator.drafts)
    return max((bisect_left(stamps, t + 1000) - i for i, t in enumerate(stamps)), default=0)


# ---------------------------------------------------------------------------------------------
# create
# ---------------------------------------------------------------------------------------------
def test_create_stores_the_raw_message_and_returns_gmails_ids(
    gmail: Served, make_sink: MakeSink
) -> None:
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


def test_unknown_mailbox_is_asked_of_gmail_once(gmail: Served, make_sink: MakeSink) -> None:
    emulator, base_url = gmail
    sink = make_sink(base_url, mailbox=None)

    created = [sink.create(outgoing(invoice_id=f"INV-{i}")) for i in range(2)]

    assert {c.mailbox for c in created} == {OWNER}  # the pace is keyed by this address
    assert emulator.calls == {"users.getProfile": 1, "drafts.create": 2}


def test_later_stage_is_created_in_the_earlier_reminders_thread(
    gmail: Served, make_sink: MakeSink
) -> None:
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


def test_follow_up_whose_thread_was_deleted_starts_a_new_thread(
    gmail: Served, make_sink: MakeSink
) -> None:
    emulator, base_url = gmail
    gone = ThreadRef("18cffffffffffff0", "<INV-1.7@invoice-collector.example>")

    created = make_sink(base_url).create(outgoing(stage=14, thread=gone))

    assert created.thread_id == created.message_id
    assert len(emulator.drafts) == 1
    assert emulator.calls["drafts.create"] == 2  # 404 on the thread, then without it


def test_follow_up_whose_thread_id_gmail_cannot_parse_starts_a_new_thread(
    gmail: Served, make_sink: MakeSink
) -> None:
    # The ledger's earlier reminder came from the Maildir sink, whose thread id is the root's
    # Message-ID: Gmail answers 400 "Invalid thread_id value", not 404.
    emulator, base_url = gmail
    maildir = ThreadRef(
        "<INV-1.7@invoice-collector.example>", "<INV-1.7@invoice-collector.example>"
    )

    created = make_sink(base_url).create(outgoing(stage=14, thread=maildir))

    assert created.thread_id == created.message_id
    assert len(emulator.drafts) == 1
    assert emulator.calls["drafts.create"] == 2  # 400 on the thread, then without it


def test_bad_message_is_not_retried(gmail: Served, make_sink: MakeSink) -> None:
    emulator, base_url = gmail
    emulator.faults.push(Fault("error", status=400, reason="invalidArgument"))

    with pytest.raises(SinkError) as caught:
        make_sink(base_url).create(outgoing())

    assert caught.value.retryable is False
    assert not isinstance(caught.value, AuthorizationError | OutcomeUnknown)
    assert emulator.calls["drafts.create"] == 1


# ---------------------------------------------------------------------------------------------
# find
# ---------------------------------------------------------------------------------------------
def test_find_adopts_the_draft_carrying_the_key_header(gmail: Served, make_sink: MakeSink) -> None:
    emulator, base_url = gmail
    draft = outgoing()
    emulator.add_draft(draft.raw, user=OWNER)

    found = make_sink(base_url).find(draft)

    assert found is not None
    assert found.draft_id == emulator.drafts[0].draft_id
    assert found.rfc_message_id == draft.rfc_message_id
    assert emulator.calls == {"drafts.list": 1, "drafts.get": 1}


def test_find_ignores_a_same_subject_draft_for_another_key(
    gmail: Served, make_sink: MakeSink
) -> None:
    emulator, base_url = gmail
    other_stage = outgoing(stage=14)
    emulator.add_draft(other_stage.raw, user=OWNER)

    assert make_sink(base_url).find(outgoing(stage=7)) is None
    # Searched, then read the newest drafts: both times rejected by the key header.
    assert emulator.calls == {"drafts.list": 2, "drafts.get": 2}


def test_find_searches_past_the_first_page_of_candidates(
    gmail: Served, make_sink: MakeSink
) -> None:
    emulator, base_url = gmail
    wanted = outgoing(stage=7)
    emulator.add_draft(wanted.raw, user=OWNER)
    for i in range(110):  # newer look-alikes (same recipient and subject, other keys)
        emulator.add_draft(outgoing(invoice_id="INV-1", stage=100 + i).raw, user=OWNER)

    sink = make_sink(base_url, drafts_per_second=10_000, max_find_candidates=120)
    found = sink.find(wanted)

    assert found is not None
    assert found.draft_id == emulator.drafts[0].draft_id
    assert emulator.calls["drafts.list"] == 2  # pages of 100


def test_find_reads_the_newest_drafts_while_the_search_index_lags(
    gmail: Served, make_sink: MakeSink
) -> None:
    emulator, base_url = gmail
    emulator.search_lag_s = 60
    draft = outgoing()
    emulator.add_draft(draft.raw, user=OWNER)
    for i in range(5):
        emulator.add_draft(outgoing(invoice_id=f"INV-{i + 2}").raw, user=OWNER)
    sink = make_sink(base_url)

    found = sink.find(draft)
    again = sink.find(outgoing(invoice_id="INV-3"))

    assert found is not None and found.draft_id == emulator.drafts[0].draft_id
    assert again is not None and again.draft_id == emulator.drafts[2].draft_id
    # The newest drafts are read once per sink (one request), however many keys it reconciles.
    assert emulator.calls == {"drafts.list": 3, "drafts.get": 6}


def test_find_reads_no_further_than_the_newest_drafts_it_is_given(
    gmail: Served, make_sink: MakeSink
) -> None:
    emulator, base_url = gmail
    emulator.search_lag_s = 60
    draft = outgoing()
    emulator.add_draft(draft.raw, user=OWNER)
    for i in range(5):
        emulator.add_draft(outgoing(invoice_id=f"INV-{i + 2}").raw, user=OWNER)

    assert make_sink(base_url, newest_drafts=5).find(draft) is None
    assert emulator.calls["drafts.get"] == 5


def test_find_returns_none_when_nothing_matches(gmail: Served, make_sink: MakeSink) -> None:
    emulator, base_url = gmail
    emulator.add_draft(outgoing(invoice_id="INV-9", to="someone@else.example").raw, user=OWNER)

    assert make_sink(base_url).find(outgoing()) is None
    assert emulator.calls == {"drafts.list": 2, "drafts.get": 1}


# ---------------------------------------------------------------------------------------------
# Exactly-once under faults: a create is never sent again once Gmail may hold it
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fault",
    [
        Fault.stored_then_error(500),
        Fault.created_then_drop(),
        Fault.server_error(503),
        Fault.drop(),
    ],
    ids=["500-after-storing", "dropped-after-storing", "503", "dropped"],
)
def test_a_create_whose_outcome_is_unknown_is_never_sent_again(
    gmail: Served, make_sink: MakeSink, fault: Fault, caplog: pytest.LogCaptureFixture
) -> None:
    emulator, base_url = gmail
    emulator.faults.push(fault, method="drafts.create")
    caplog.set_level(logging.DEBUG)

    with pytest.raises(OutcomeUnknown) as caught:
        make_sink(base_url).create(outgoing())

    assert caught.value.retryable and caught.value.code == "gmail_outcome_unknown"
    # No second create, and no search either: the index would not show the draft yet.
    assert emulator.calls == {"drafts.create": 1}
    assert len(emulator.drafts) == (0 if fault.kind in {"drop", "error"} else 1)
    assert TOKEN not in str(caught.value) + caplog.text
    assert SECRET_BODY not in str(caught.value) + caplog.text


def test_a_refused_connection_stored_nothing_and_is_retried(make_sink: MakeSink) -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        base_url = f"http://127.0.0.1:{closed.getsockname()[1]}/"
        policy = RetryPolicy(max_attempts=3, max_total_s=5, base_delay_s=0.01, max_delay_s=0.02)

        with pytest.raises(SinkError) as caught:
            make_sink(base_url, policy=policy).create(outgoing())

    assert not isinstance(caught.value, OutcomeUnknown)
    assert caught.value.code == "gmail_unavailable" and "3 attempts" in str(caught.value)


def test_reconciling_after_faults_leaves_exactly_one_draft_each(
    gmail: Served, make_sink: MakeSink
) -> None:
    emulator, base_url = gmail
    emulator.search_lag_s = 60  # only the newest drafts' own headers can tell
    creates = {"drafts.create"}
    emulator.faults.set_rate(Fault.stored_then_error(500), 0.1, method=creates)
    emulator.faults.set_rate(Fault.server_error(500), 0.05, method=creates)
    emulator.faults.set_rate(Fault.rate_limited(retry_after_s=0), 0.06, method=creates)
    emulator.faults.set_rate(Fault.user_rate_limited(), 0.02, method=creates)
    emulator.faults.set_rate(Fault.created_then_drop(), 0.03, method=creates)
    emulator.faults.set_rate(Fault.drop(), 0.02, method=creates)
    emulator.faults.set_rate("503", 0.05, method={"drafts.list", "drafts.get"})
    fast = {"drafts_per_second": 1000}
    pending = [outgoing(invoice_id=f"INV-{i}") for i in range(80)]

    def create(sink: GmailSink, draft: OutgoingDraft, looking: bool) -> OutgoingDraft | None:
        try:
            if not (looking and sink.find(draft)):
                sink.create(draft)
        except OutcomeUnknown:
            return draft  # pending: looked for by the next pass, as after the lease
        return None

    looking = False
    for _ in range(10):  # each pass a new request: a new sink
        sink = make_sink(base_url, **fast)
        with ThreadPoolExecutor(max_workers=6) as pool:
            results = pool.map(lambda d, s=sink, lk=looking: create(s, d, lk), pending)
            pending = [d for d in results if d is not None]
        looking = True
        if not pending:
            break

    assert pending == []
    assert keys_stored(emulator) == Counter(f"sheet-1/INV-{i}/7" for i in range(80))
    assert emulator.faults.injected["error_after"] >= 3  # the faults really happened
    for stored in emulator.drafts:
        parsed = email.message_from_bytes(stored.raw, policy=email.policy.default)
        assert parsed["X-Invoice-Collector-Key"] == stored.key


def test_rate_limit_waits_at_least_retry_after(gmail: Served, make_sink: MakeSink) -> None:
    emulator, base_url = gmail
    emulator.faults.push(Fault.rate_limited(retry_after_s=7), method="drafts.create")
    slept: list[float] = []

    make_sink(base_url, sleep=slept.append).create(outgoing())

    assert slept and slept[0] >= 7
    assert emulator.calls == {"drafts.create": 2}  # a 429 stores nothing: sent again at once


def test_persistent_rate_limit_gives_up_with_a_retryable_error_and_no_secrets(
    gmail: Served, make_sink: MakeSink, caplog: pytest.LogCaptureFixture
) -> None:
    emulator, base_url = gmail
    emulator.faults.set_rate(Fault.rate_limited(retry_after_s=0), 1.0, method="drafts.create")
    caplog.set_level(logging.DEBUG)
    policy = RetryPolicy(max_attempts=4, max_total_s=5, base_delay_s=0.01, max_delay_s=0.02)

    with pytest.raises(SinkError) as caught:
        make_sink(base_url, policy=policy).create(outgoing())

    assert caught.value.retryable is True
    assert caught.value.code == "gmail_unavailable"  # a 429 stores nothing
    assert emulator.calls["drafts.create"] == 4
    assert emulator.drafts == []
    everything = str(caught.value) + caplog.text
    assert TOKEN not in everything
    assert SECRET_BODY not in everything


def test_total_retry_time_is_bounded(gmail: Served, make_sink: MakeSink) -> None:
    emulator, base_url = gmail
    emulator.faults.set_rate(Fault.rate_limited(retry_after_s=1), 1.0, method="drafts.create")
    policy = RetryPolicy(max_attempts=100, max_total_s=1.5, base_delay_s=0.01)

    with pytest.raises(SinkError) as caught:
        make_sink(base_url, policy=policy).create(outgoing())

    assert caught.value.retryable is True
    assert caught.value.code == "gmail_unavailable"  # a 429 stores nothing
    # Retry-After 1 s: a second wait would end past the 1.5 s budget, so it stops there.
    assert emulator.calls["drafts.create"] <= 2


# ---------------------------------------------------------------------------------------------
# Authorisation
# ---------------------------------------------------------------------------------------------
def test_unknown_bare_token_raises_authorization_error(gmail: Served, make_sink: MakeSink) -> None:
    _, base_url = gmail
    with pytest.raises(AuthorizationError) as caught:
        make_sink(base_url, credentials="revoked-token").create(outgoing())
    assert caught.value.retryable is False
    assert "revoked-token" not in str(caught.value)


def test_401_that_survives_a_refresh_raises_authorization_error(make_sink: MakeSink) -> None:
    with running_gmail_emulator(tokens={TOKEN: OWNER}, refresh_tokens={"rt": "still-invalid"}) as (
        emulator,
        base_url,
    ):
        creds = server_credentials(base_url, refresh_token="rt")
        with pytest.raises(AuthorizationError):
            make_sink(base_url, credentials=creds).create(outgoing())
        assert emulator.drafts == []


def test_revoked_refresh_token_raises_authorization_error(make_sink: MakeSink) -> None:
    with running_gmail_emulator(tokens={TOKEN: OWNER}) as (_, base_url):
        creds = server_credentials(base_url, refresh_token="revoked")
        with pytest.raises(AuthorizationError):
            make_sink(base_url, credentials=creds).find(outgoing())


def test_server_credentials_refresh_and_carry_on(make_sink: MakeSink) -> None:
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
def test_sinks_of_one_mailbox_share_its_pace_inside_gmails_quota(make_sink: MakeSink) -> None:
    # Real-sized quota: 15,000 units per minute, 25 drafts/s. Two sinks, as two requests on
    # two workers, each with 4 drafts in flight: together they never pass 25 in a second.
    with running_gmail_emulator(tokens={TOKEN: OWNER}) as (emulator, base_url):
        sinks = [make_sink(base_url, mailbox="shared@example.com") for _ in range(2)]
        drafts = [outgoing(invoice_id=f"INV-{i}") for i in range(90)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda i: sinks[i % 2].create(drafts[i]), range(90)))

    assert len(emulator.drafts) == 90
    assert most_in_one_second(emulator) <= 25
    assert "429" not in emulator.faults.injected and emulator.calls["drafts.create"] == 90


def test_sink_paced_too_fast_recovers_from_quota_429s_exactly_once(make_sink: MakeSink) -> None:
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
