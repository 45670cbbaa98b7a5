"""The Gmail emulator, driven by the real google-api-python-client: it must answer like Google."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import google.auth.exceptions
import httplib2
import pytest
import requests
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from tests.emulators.gmail import Fault, GmailEmulator, running_gmail_emulator

pytestmark = pytest.mark.timeout(30)

TOKEN = "emulator-token"
OWNER = "owner@example.com"
Gmail = tuple[GmailEmulator, str, Any]  # emulator, base URL, a client on it


def mime(
    subject: str,
    *,
    to: str = "client@example.com",
    key: str = "sheet-1/INV-1/7",
    in_reply_to: str | None = None,
    body: str = "Dear client, invoice INV-1 is 7 days overdue.",
) -> bytes:
    """A reminder as the service renders it (stdlib EmailMessage, key header included)."""
    msg = EmailMessage()
    msg["From"] = OWNER
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{key.replace('/', '.')}@invoice-collector>"
    msg["X-Invoice-Collector-Key"] = key
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg.set_content(body)
    return msg.as_bytes()


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


def gmail_client(base_url: str, token: str = TOKEN) -> Any:
    return build(
        "gmail",
        "v1",
        credentials=Credentials(token=token),  # type: ignore[no-untyped-call]
        static_discovery=True,
        client_options={"api_endpoint": base_url},
        cache_discovery=False,
    )


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[GmailEmulator, str]]:
    with running_gmail_emulator(tokens={TOKEN: OWNER}) as served:
        yield served


@pytest.fixture
def gmail(served: tuple[GmailEmulator, str]) -> Gmail:
    """One server per module (shutting one down takes ~0.5 s); a fresh state per test."""
    emulator, base_url = served
    emulator.reset()
    return emulator, base_url, gmail_client(base_url)


def create(service: Any, raw: bytes, thread_id: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"raw": b64(raw)}
    if thread_id:
        message["threadId"] = thread_id
    reply: dict[str, Any] = (
        service.users().drafts().create(userId="me", body={"message": message}).execute()
    )
    return reply


# ---------------------------------------------------------------------------------------------
# drafts.create and threading
# ---------------------------------------------------------------------------------------------
def test_create_returns_a_draft_resource_labelled_draft_and_stores_the_raw_bytes(
    gmail: Gmail,
) -> None:
    emulator, _, service = gmail
    raw = mime("Invoice INV-1 is overdue")

    reply = create(service, raw)

    assert set(reply) == {"id", "message"}
    assert reply["id"].startswith("r-")
    assert reply["message"]["labelIds"] == ["DRAFT"]
    assert reply["message"]["threadId"] == reply["message"]["id"]  # a new thread
    [stored] = emulator.drafts
    assert (stored.draft_id, stored.raw) == (reply["id"], raw)
    parsed = email.message_from_bytes(stored.raw, policy=email.policy.default)
    assert parsed["X-Invoice-Collector-Key"] == "sheet-1/INV-1/7"
    assert emulator.calls["drafts.create"] == 1
    assert emulator.round_trips == 1


def test_media_upload_form_the_client_sends_creates_the_same_draft(gmail: Gmail) -> None:
    emulator, base_url, service = gmail
    raw = mime("Invoice INV-1 is overdue")
    from googleapiclient.http import MediaInMemoryUpload

    request = (
        service.users()
        .drafts()
        .create(
            userId="me",
            body={"message": {}},
            media_body=MediaInMemoryUpload(raw, mimetype="message/rfc822"),
        )
    )
    # The client rewrites only the host of media URLs, keeping https from the discovery
    # document; send the exact body and headers it built over plain http instead.
    url = base_url.rstrip("/") + "/" + request.uri.split("/", 3)[3]
    reply = requests.post(
        url,
        data=request.body,
        headers={**request.headers, "Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )

    assert "uploadType=multipart" in url
    assert reply.status_code == 200, reply.text
    assert emulator.drafts[0].raw == raw


def test_reply_with_thread_id_reply_headers_and_same_subject_joins_the_thread(gmail: Gmail) -> None:
    _, _, service = gmail
    first = create(service, mime("Invoice INV-1 is overdue"))
    thread_id = first["message"]["threadId"]

    follow_up = create(
        service,
        mime("Re: Invoice INV-1 is overdue", key="sheet-1/INV-1/14", in_reply_to="<a@b>"),
        thread_id,
    )

    assert follow_up["message"]["threadId"] == thread_id


@pytest.mark.parametrize(
    ("subject", "in_reply_to", "drop"),
    [
        ("Invoice INV-1 is overdue", None, None),
        ("Final notice for INV-1", "<a@b>", None),
        ("Re: Invoice INV-1 is overdue", "<a@b>", "References"),
        ("Re: Invoice INV-1 is overdue", "<a@b>", "In-Reply-To"),
    ],
    ids=["without-reply-headers", "with-another-subject", "no-references", "no-in-reply-to"],
)
def test_thread_id_is_ignored_unless_gmails_threading_rules_hold(
    gmail: Gmail, subject: str, in_reply_to: str | None, drop: str | None
) -> None:
    _, _, service = gmail
    first = create(service, mime("Invoice INV-1 is overdue"))
    msg = email.message_from_bytes(
        mime(subject, key="sheet-1/INV-1/14", in_reply_to=in_reply_to), policy=email.policy.SMTP
    )
    if drop:
        del msg[drop]  # Gmail wants both In-Reply-To and References

    follow_up = create(service, msg.as_bytes(), first["message"]["threadId"])

    assert follow_up["message"]["threadId"] == follow_up["message"]["id"]


def test_unknown_thread_id_is_not_found(gmail: Gmail) -> None:
    _, _, service = gmail
    with pytest.raises(HttpError) as caught:
        create(service, mime("Invoice INV-1", in_reply_to="<a@b>"), "18c0000000000000")
    assert caught.value.resp.status == 404
    assert json.loads(caught.value.content)["error"]["status"] == "NOT_FOUND"


@pytest.mark.parametrize("thread_id", ["<INV-1.7@invoice-collector>", "FMfcgzQfCMsvMmcQ"])
def test_thread_id_gmail_cannot_parse_is_a_bad_request(gmail: Gmail, thread_id: str) -> None:
    emulator, _, service = gmail
    with pytest.raises(HttpError) as caught:
        create(service, mime("Re: Invoice INV-1", in_reply_to="<a@b>"), thread_id)
    assert caught.value.resp.status == 400
    error = json.loads(caught.value.content)["error"]
    assert (error["message"], error["status"]) == ("Invalid thread_id value", "INVALID_ARGUMENT")
    assert emulator.drafts == []


def test_missing_raw_is_a_bad_request(gmail: Gmail) -> None:
    _, _, service = gmail
    with pytest.raises(HttpError) as caught:
        service.users().drafts().create(userId="me", body={"message": {}}).execute()
    assert caught.value.resp.status == 400
    assert caught.value.error_details[0]["reason"] == "badRequest"


# ---------------------------------------------------------------------------------------------
# drafts.list, drafts.get, messages.get
# ---------------------------------------------------------------------------------------------
def test_list_finds_by_recipient_and_subject_phrase_newest_first(gmail: Gmail) -> None:
    _, _, service = gmail
    a = create(service, mime("Invoice INV-1 is overdue", to="a@example.com"))
    create(service, mime("Invoice INV-2 is overdue", to="a@example.com", key="s/INV-2/7"))
    c = create(service, mime("Second reminder: INV-1 is overdue", to="a@example.com", key="s/x"))
    create(service, mime("Invoice INV-1 is overdue", to="b@example.com", key="s/INV-1/b"))

    listing = (
        service.users()
        .drafts()
        .list(userId="me", q='to:a@example.com subject:"INV-1 is"')
        .execute()
    )

    assert [d["id"] for d in listing["drafts"]] == [c["id"], a["id"]]
    assert listing["resultSizeEstimate"] == 2
    assert set(listing["drafts"][0]["message"]) == {"id", "threadId"}
    one_word = service.users().drafts().list(userId="me", q="subject:INV-2").execute()
    assert one_word["resultSizeEstimate"] == 1


def test_list_without_matches_omits_the_drafts_array(gmail: Gmail) -> None:
    _, _, service = gmail
    create(service, mime("Invoice INV-1 is overdue"))
    listing = service.users().drafts().list(userId="me", q="to:nobody@example.com").execute()
    assert listing == {"resultSizeEstimate": 0}


def test_list_pages_with_max_results_and_page_token(gmail: Gmail) -> None:
    _, _, service = gmail
    created = [create(service, mime(f"Reminder {i}", key=f"s/{i}/7"))["id"] for i in range(5)]

    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = service.users().drafts().list(userId="me", maxResults=2, pageToken=token).execute()
        seen += [d["id"] for d in page["drafts"]]
        pages += 1
        token = page.get("nextPageToken")
        if not token:
            break

    assert pages == 3
    assert seen == list(reversed(created))


def test_get_returns_each_format_in_googles_shape(gmail: Gmail) -> None:
    _, _, service = gmail
    raw = mime("Invoice INV-1 is overdue")
    draft = create(service, raw)
    drafts = service.users().drafts()

    full = drafts.get(userId="me", id=draft["id"]).execute()["message"]
    metadata = drafts.get(userId="me", id=draft["id"], format="metadata").execute()["message"]
    raw_form = drafts.get(userId="me", id=draft["id"], format="raw").execute()["message"]
    minimal = drafts.get(userId="me", id=draft["id"], format="minimal").execute()["message"]

    headers = {h["name"]: h["value"] for h in full["payload"]["headers"]}
    assert headers["X-Invoice-Collector-Key"] == "sheet-1/INV-1/7"
    assert full["payload"]["mimeType"] == "text/plain"
    body = base64.urlsafe_b64decode(full["payload"]["body"]["data"])
    assert body.startswith(b"Dear client")
    assert full["snippet"].startswith("Dear client")
    assert "body" not in metadata["payload"]
    assert base64.urlsafe_b64decode(raw_form["raw"]) == raw
    assert "payload" not in raw_form
    assert "payload" not in minimal
    assert "raw" not in minimal
    assert minimal["labelIds"] == ["DRAFT"]


def test_messages_get_metadata_headers_filters_headers(gmail: Gmail) -> None:
    _, _, service = gmail
    draft = create(service, mime("Invoice INV-1 is overdue"))

    message = (
        service.users()
        .messages()
        .get(
            userId="me",
            id=draft["message"]["id"],
            format="metadata",
            metadataHeaders=["X-Invoice-Collector-Key", "Subject"],
        )
        .execute()
    )

    assert {h["name"] for h in message["payload"]["headers"]} == {
        "X-Invoice-Collector-Key",
        "Subject",
    }


def test_unknown_draft_is_not_found(gmail: Gmail) -> None:
    _, _, service = gmail
    with pytest.raises(HttpError) as caught:
        service.users().drafts().get(userId="me", id="r-404").execute()
    assert caught.value.resp.status == 404


# ---------------------------------------------------------------------------------------------
# Auth
# ---------------------------------------------------------------------------------------------
def test_unknown_token_gets_googles_401_body(gmail: Gmail) -> None:
    _, base_url, _ = gmail
    reply = requests.get(
        base_url + "gmail/v1/users/me/drafts",
        headers={"Authorization": "Bearer nope"},
        timeout=5,
    )
    missing = requests.get(base_url + "gmail/v1/users/me/drafts", timeout=5)

    assert reply.status_code == missing.status_code == 401
    error = reply.json()["error"]
    assert error["code"] == 401
    assert error["status"] == "UNAUTHENTICATED"
    assert error["message"].startswith("Request had invalid authentication credentials")
    assert error["errors"][0]["reason"] == "authError"
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")


def test_bare_token_client_turns_401_into_refresh_error(gmail: Gmail) -> None:
    _, base_url, _ = gmail
    with pytest.raises(google.auth.exceptions.RefreshError):
        gmail_client(base_url, token="revoked").users().drafts().list(userId="me").execute()


def test_refresh_token_grant_yields_a_working_access_token() -> None:
    with running_gmail_emulator(tokens={"fresh": OWNER}, refresh_tokens={"rt": "fresh"}) as (
        emulator,
        base_url,
    ):
        creds = Credentials(  # type: ignore[no-untyped-call]
            token="expired",
            refresh_token="rt",
            token_uri=base_url + "token",
            client_id="client",
            client_secret="secret",
        )
        service = build(
            "gmail",
            "v1",
            credentials=creds,
            static_discovery=True,
            client_options={"api_endpoint": base_url},
            cache_discovery=False,
        )
        service.users().drafts().list(userId="me").execute()
        assert creds.token == "fresh"
        assert emulator.calls["drafts.list"] == 2  # the 401, then the retry


def test_another_users_mailbox_is_forbidden(gmail: Gmail) -> None:
    _, _, service = gmail
    with pytest.raises(HttpError) as caught:
        service.users().drafts().list(userId="someone@else.com").execute()
    assert caught.value.resp.status == 403


# ---------------------------------------------------------------------------------------------
# Quota
# ---------------------------------------------------------------------------------------------
def test_quota_exhaustion_answers_429_with_retry_after_until_the_window_rolls() -> None:
    now = [1000.0]
    with running_gmail_emulator(
        tokens={TOKEN: OWNER}, quota_units=100, quota_window_s=60.0, clock=lambda: now[0]
    ) as (emulator, base_url):
        service = gmail_client(base_url)
        for i in range(10):  # 10 x 10 units
            create(service, mime(f"Reminder {i}", key=f"s/{i}/7"))

        with pytest.raises(HttpError) as caught:
            create(service, mime("One too many", key="s/x/7"))

        assert caught.value.resp.status == 429
        assert caught.value.resp["retry-after"] == "60"
        error = json.loads(caught.value.content)["error"]
        assert error["status"] == "RESOURCE_EXHAUSTED"
        assert error["errors"][0]["reason"] == "rateLimitExceeded"
        assert error["errors"][0]["domain"] == "usageLimits"
        assert len(emulator.drafts) == 10  # a refused call stores nothing and costs nothing

        now[0] += 60.0
        create(service, mime("After the window", key="s/y/7"))
        assert emulator.quota.used(OWNER) == 10


def test_methods_cost_their_published_quota_units(gmail: Gmail) -> None:
    emulator, _, service = gmail
    draft = create(service, mime("Invoice INV-1 is overdue"))
    service.users().drafts().list(userId="me").execute()
    service.users().drafts().get(userId="me", id=draft["id"]).execute()
    service.users().messages().get(userId="me", id=draft["message"]["id"]).execute()
    assert emulator.quota.used(OWNER) == 10 + 5 + 5 + 5


# ---------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------
def test_queued_faults_fire_in_order_for_the_named_method(gmail: Gmail) -> None:
    emulator, _, service = gmail
    emulator.faults.push("503", Fault.user_rate_limited(), method="drafts.create")
    service.users().drafts().list(userId="me").execute()  # not a create: untouched

    statuses = []
    for i in range(3):
        try:
            create(service, mime(f"R{i}", key=f"s/{i}/7"))
            statuses.append(200)
        except HttpError as exc:
            statuses.append(exc.resp.status)

    assert statuses == [503, 403, 200]
    assert emulator.faults.injected == {"503": 1, "403": 1}


def test_created_then_drop_stores_the_draft_but_the_answer_never_arrives(gmail: Gmail) -> None:
    emulator, base_url, _ = gmail
    emulator.faults.push(Fault.created_then_drop())

    with pytest.raises(requests.ConnectionError):
        requests.post(
            base_url + "gmail/v1/users/me/drafts",
            json={"message": {"raw": b64(mime("Invoice INV-1"))}},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=5,
        )

    assert len(emulator.drafts) == 1


def test_stored_then_error_keeps_the_draft_but_answers_500(gmail: Gmail) -> None:
    emulator, _, service = gmail
    emulator.faults.push("stored_then_500", method="drafts.create")

    with pytest.raises(HttpError) as caught:
        create(service, mime("Invoice INV-1"))

    assert caught.value.resp.status == 500
    assert [d.key for d in emulator.drafts] == ["sheet-1/INV-1/7"]
    assert emulator.faults.injected == {"error_after": 1}


def test_search_lags_the_store_but_a_plain_list_does_not(gmail: Gmail) -> None:
    emulator, _, service = gmail
    emulator.search_lag_s = 60
    created = create(service, mime("Invoice INV-1 is overdue"))
    drafts = service.users().drafts()

    assert "drafts" not in drafts.list(userId="me", q="subject:INV-1").execute()
    assert [d["id"] for d in drafts.list(userId="me").execute()["drafts"]] == [created["id"]]
    emulator.search_lag_s = 0.001  # the index caught up
    time.sleep(0.002)
    assert [d["id"] for d in drafts.list(userId="me", q="subject:INV-1").execute()["drafts"]] == [
        created["id"]
    ]


def test_httplib2_silently_resends_a_post_whose_connection_dropped(gmail: Gmail) -> None:
    # The client library's default transport retries a dropped POST by itself: with Gmail
    # that is a duplicate draft. This is why the sink uses a transport that sends once.
    emulator, base_url, _ = gmail
    emulator.faults.push(Fault.created_then_drop())
    service = build(
        "gmail",
        "v1",
        http=httplib2.Http(),
        static_discovery=True,
        client_options={"api_endpoint": base_url},
        cache_discovery=False,
    )
    message = {"raw": b64(mime("Invoice INV-1"))}
    request = service.users().drafts().create(userId="me", body={"message": message})
    request.headers["authorization"] = f"Bearer {TOKEN}"

    request.execute()

    assert len(emulator.drafts) == 2


def test_random_faults_are_reproducible_with_a_seed() -> None:
    def run() -> list[int]:
        with running_gmail_emulator(tokens={TOKEN: OWNER}, seed=7) as (emulator, base_url):
            emulator.faults.set_rate("500", 0.3, method="drafts.list")
            service = gmail_client(base_url)
            out = []
            for _ in range(20):
                try:
                    service.users().drafts().list(userId="me").execute()
                    out.append(200)
                except HttpError as exc:
                    out.append(exc.resp.status)
            return out

    first = run()
    assert first == run()
    assert 500 in first
    assert 200 in first


def test_latency_fault_delays_the_answer(gmail: Gmail) -> None:
    emulator, _, service = gmail
    emulator.faults.push(Fault.latency(0.3))
    started = time.monotonic()
    service.users().drafts().list(userId="me").execute()
    assert time.monotonic() - started >= 0.3


# ---------------------------------------------------------------------------------------------
# Standalone process
# ---------------------------------------------------------------------------------------------
def test_standalone_emulator_serves_the_client_and_reports_state() -> None:
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.emulators.gmail", "--port", "0", "--token", "T"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        base_url = line.rsplit(" ", 1)[-1].strip()
        assert base_url.startswith("http://127.0.0.1:")
        service = gmail_client(base_url, token="T")
        requests.post(base_url + "_emulator/faults", json={"push": ["503"]}, timeout=5)
        with pytest.raises(HttpError):
            create(service, mime("Invoice INV-1"))
        create(service, mime("Invoice INV-1"))

        state = requests.get(base_url + "_emulator/state", timeout=5).json()
        drafts = requests.get(base_url + "_emulator/drafts", timeout=5).json()

        assert state["drafts"] == 1
        assert state["calls"] == {"drafts.create": 2}
        assert state["faults_injected"] == {"503": 1}
        assert drafts[0]["key"] == "sheet-1/INV-1/7"
    finally:
        process.terminate()
        process.wait(timeout=5)
