"""build_draft: the RFC 5322 message of a reminder, its headers and what it refuses."""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import re
from email.header import decode_header, make_header
from email.message import EmailMessage
from typing import Any

import pytest

from service.ports import DraftKey, OutgoingDraft, ThreadRef
from service.usecases.message import HeaderInjectionError, build_draft, message_id_for

pytestmark = pytest.mark.timeout(20)  # a hang (lock, deadlock) fails fast, not at 300 s

NOW = dt.datetime(2025, 1, 22, 9, 30, tzinfo=dt.UTC)
KEY = DraftKey("1AbCsheet", "INV-001", 14)


def _build(**overrides: Any) -> OutgoingDraft:
    args: dict[str, Any] = {
        "key": KEY,
        "to": ["ann@example.com"],
        "sender": "Acme Billing <billing@acme.test>",
        "subject": "Invoice INV-001 is 14 days overdue",
        "body": "Dear Ann,\n\nPlease pay invoice INV-001.\n",
        "domain": "acme.test",
        "now": NOW,
    }
    args.update(overrides)
    return build_draft(**args)


def _text(part: EmailMessage) -> str:
    """A text part's content with the wire's CRLF line ends turned back into LF."""
    return str(part.get_content()).replace("\r\n", "\n")


def _parse(draft: OutgoingDraft) -> EmailMessage:
    msg = email.message_from_bytes(draft.raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_draft_has_the_reminder_headers() -> None:
    msg = _parse(_build())

    assert msg["From"] == "Acme Billing <billing@acme.test>"
    assert msg["To"] == "ann@example.com"
    assert msg["Subject"] == "Invoice INV-001 is 14 days overdue"
    assert msg["Date"].datetime == NOW
    assert msg["X-Invoice-Collector-Key"] == "1AbCsheet/INV-001/14"
    assert msg["MIME-Version"] == "1.0"
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content_charset() == "utf-8"
    assert _text(msg) == "Dear Ann,\n\nPlease pay invoice INV-001.\n"
    assert "In-Reply-To" not in msg


def test_outgoing_draft_carries_key_recipients_subject_and_message_id() -> None:
    draft = _build(to=["ann@example.com", "ap@example.com"])

    assert draft.key == KEY
    assert draft.to == ("ann@example.com", "ap@example.com")
    assert draft.subject == "Invoice INV-001 is 14 days overdue"
    assert _parse(draft)["Message-ID"] == draft.rfc_message_id
    assert draft.thread is None


def test_several_recipients_including_quoted_names_with_commas() -> None:
    msg = _parse(_build(to=['"Doe, Jane" <jane@example.com>', "ap@example.com", "Bo <b@x.org>"]))

    addresses = msg["To"].addresses
    assert [a.addr_spec for a in addresses] == ["jane@example.com", "ap@example.com", "b@x.org"]
    assert addresses[0].display_name == "Doe, Jane"


def test_unicode_names_subject_and_body_are_encoded_and_survive_the_round_trip() -> None:
    draft = _build(
        to=["Zoë Müller <zoe@example.com>"],
        sender="Café Ünïcode <billing@acme.test>",
        subject="Rappel : facture n° INV-001 — 1 234,50 € ✓",
        body="Bonjour Zoë,\n\nMontant : 1 234,50 €.\n",
    )

    assert draft.raw.isascii()  # RFC 2047 words and quoted-printable: 7-bit clean
    assert b"=?utf-8?" in draft.raw
    msg = _parse(draft)
    assert msg["To"].addresses[0].display_name == "Zoë Müller"
    assert msg["From"].addresses[0].display_name == "Café Ünïcode"
    assert msg["Subject"] == "Rappel : facture n° INV-001 — 1 234,50 € ✓"
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"
    assert _text(msg) == "Bonjour Zoë,\n\nMontant : 1 234,50 €.\n"


# Values (found by fuzzing) on which CPython 3.11's own folder loses the blank between two
# encoded words: "€ ✓" would arrive as "€✓".
LONG_SUBJECT = "Rappel : facture n° INV-001 — 1 234,50 € ✓ " * 3 + "dernier rappel — merci"
LONG_INVOICE_ID = "Comptabilité demande ✓ révisée à révisée"
LONG_NAME = "2025 2025 ✓ Comptabilité demande Société € Générale Société 2025 Comptabilité la"


def test_long_non_ascii_subject_and_key_keep_every_space() -> None:
    key = DraftKey("sheet", LONG_INVOICE_ID, 14)

    msg = _parse(_build(key=key, subject=LONG_SUBJECT))

    assert msg["Subject"] == LONG_SUBJECT
    assert msg["X-Invoice-Collector-Key"] == key.header_value()


def test_long_non_ascii_display_name_keeps_every_space() -> None:
    draft = _build(to=[f"{LONG_NAME} <ap@example.com>", "bo@example.com"])

    # Decoded the RFC 2047 way (adjacent encoded words join without the folding blank);
    # CPython 3.11's modern parser wrongly adds a blank there, so it is not the judge here.
    legacy = email.message_from_bytes(draft.raw, policy=email.policy.compat32)
    unfolded = re.sub(r"\r\n(?=[ \t])", "", str(legacy["To"]))
    assert (
        str(make_header(decode_header(unfolded))) == f"{LONG_NAME} <ap@example.com>, bo@example.com"
    )
    assert all(len(line) <= 78 for line in draft.raw.split(b"\r\n\r\n")[0].split(b"\r\n"))


def test_internationalised_domain_is_sent_as_punycode() -> None:
    msg = _parse(_build(to=["Jörg <j@bücher.de>"]))

    assert msg["To"].addresses[0].addr_spec == "j@xn--bcher-kva.de"


def test_html_alternative_goes_beside_the_text_body() -> None:
    msg = _parse(_build(html="<p>Dear Ann, please pay €100.</p>"))

    assert msg.get_content_type() == "multipart/alternative"
    plain, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert isinstance(plain, EmailMessage)
    assert isinstance(html, EmailMessage)
    assert "Please pay" in _text(plain)
    assert _text(html).strip() == "<p>Dear Ann, please pay €100.</p>"


def test_message_id_is_stable_for_a_key_so_a_retry_builds_the_same_id() -> None:
    first = _build()
    retry = _build(body="edited body", now=NOW + dt.timedelta(hours=3))
    next_stage = _build(key=dataclasses.replace(KEY, stage=21))

    assert first.rfc_message_id == retry.rfc_message_id == message_id_for(KEY, "acme.test")
    assert re.fullmatch(r"<ic\.[0-9a-f]{24}@acme\.test>", first.rfc_message_id)
    assert next_stage.rfc_message_id != first.rfc_message_id


def test_followup_replies_to_the_earlier_draft_and_references_the_thread_root() -> None:
    thread = ThreadRef(thread_id="<ic.root@acme.test>", rfc_message_id="<ic.prev@acme.test>")

    draft = _build(thread=thread)

    msg = _parse(draft)
    assert msg["In-Reply-To"] == "<ic.prev@acme.test>"
    assert msg["References"] == "<ic.root@acme.test> <ic.prev@acme.test>"
    assert draft.thread == thread


def test_gmail_thread_id_is_not_put_in_references() -> None:
    msg = _parse(_build(thread=ThreadRef(thread_id="18c2f0a9b1d4e5f6", rfc_message_id="<p@x>")))

    assert msg["In-Reply-To"] == "<p@x>"
    assert msg["References"] == "<p@x>"


def test_subject_is_used_as_given_when_threading() -> None:
    thread = ThreadRef("t", "<p@x>", subject="Invoice INV-001 is 7 days overdue")

    assert _parse(_build(thread=thread))["Subject"] == "Invoice INV-001 is 14 days overdue"


INJECTIONS = ["\r", "\n", "\r\n", "\r\nBcc: thief@evil.test"]
FIELDS = [
    "to[0]",
    "to[1]",
    "sender",
    "subject",
    "key.scope",
    "key.invoice_id",
    "domain",
    "thread.rfc_message_id",
    "thread.thread_id",
    "thread.subject",
]


def _with_injection(field: str, evil: str) -> dict[str, Any]:
    thread = ThreadRef("<root@x>", "<prev@x>", "Earlier")
    overrides: dict[str, dict[str, Any]] = {
        "to[0]": {"to": [f"ann@example.com{evil}", "bo@example.com"]},
        "to[1]": {"to": ["ann@example.com", f"Bo{evil} <bo@example.com>"]},
        "sender": {"sender": f"Acme{evil} <billing@acme.test>"},
        "subject": {"subject": f"Overdue{evil}"},
        "key.scope": {"key": dataclasses.replace(KEY, scope=f"sheet{evil}")},
        "key.invoice_id": {"key": dataclasses.replace(KEY, invoice_id=f"INV{evil}")},
        "domain": {"domain": f"acme.test{evil}"},
        "thread.rfc_message_id": {
            "thread": dataclasses.replace(thread, rfc_message_id=f"<p@x>{evil}")
        },
        "thread.thread_id": {"thread": dataclasses.replace(thread, thread_id=f"t{evil}")},
        "thread.subject": {"thread": dataclasses.replace(thread, subject=f"Earlier{evil}")},
    }
    return overrides[field]


@pytest.mark.parametrize("evil", INJECTIONS, ids=["cr", "lf", "crlf", "bcc"])
@pytest.mark.parametrize("field", FIELDS)
def test_line_break_in_any_header_value_is_rejected_naming_the_field(field: str, evil: str) -> None:
    with pytest.raises(HeaderInjectionError) as rejected:
        _build(**_with_injection(field, evil))

    assert rejected.value.field == field
    assert field in str(rejected.value)
    assert isinstance(rejected.value, ValueError)


@pytest.mark.parametrize(
    "to",
    [["not an address"], ["a@b.example, c@d.example"], [""], ["josé@example.com"]],
    ids=["no-at", "two-in-one", "empty", "non-ascii-local-part"],
)
def test_anything_but_one_mailbox_per_recipient_is_refused(to: list[str]) -> None:
    with pytest.raises(ValueError, match=r"to\[0\] must be exactly one email address"):
        _build(to=to)


def test_recipients_must_be_a_non_empty_sequence() -> None:
    with pytest.raises(ValueError, match="at least one"):
        _build(to=[])
    with pytest.raises(TypeError):
        _build(to="ann@example.com")


def test_date_is_left_out_without_now_and_naive_now_is_refused() -> None:
    assert "Date" not in _parse(_build(now=None))
    with pytest.raises(ValueError, match="timezone-aware"):
        _build(now=NOW.replace(tzinfo=None))


def test_message_id_domain_must_be_a_hostname() -> None:
    with pytest.raises(ValueError, match="not a hostname"):
        _build(domain="acme test>")
