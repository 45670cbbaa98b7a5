"""Turn a rendered reminder into an RFC 5322 message (DESIGN §6). Mechanical and pure.

What to say and whom to thread with is the caller's choice; this module only assembles the
headers and the MIME structure, and refuses header values that could smuggle in headers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Sequence
from email import policy
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

from service.ports import KEY_HEADER, DraftKey, OutgoingDraft, ThreadRef

# A domain for the Message-ID's right-hand side: dot-separated labels, nothing that would need
# quoting or could end the angle-bracketed id early.
_DOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*$")
_MSG_ID = re.compile(r"^<[^<>\s]+@[^<>\s]+>$")
_MAX_LINE = 78  # RFC 5322's recommended line length, and policy.SMTP's


class HeaderInjectionError(ValueError):
    """A header value contained CR or LF: refused, never cleaned up."""

    def __init__(self, field: str) -> None:
        super().__init__(f"{field} contains a line break (CR or LF); header values cannot")
        self.field = field


def check_header_value(field: str, value: str) -> None:
    """HeaderInjectionError if ``value`` has a CR or LF."""
    if "\r" in value or "\n" in value:
        raise HeaderInjectionError(field)


def message_id_for(key: DraftKey, domain: str) -> str:
    """The stable Message-ID of the draft for ``key``: a retry builds the same id."""
    check_header_value("domain", domain)
    if not _DOMAIN.match(domain):
        raise ValueError(f"domain {domain!r} is not a hostname")
    digest = hashlib.sha256(key.header_value().encode("utf-8")).hexdigest()[:24]
    return f"<ic.{digest}@{domain}>"


def build_draft(
    key: DraftKey,
    to: Sequence[str],
    sender: str | None,
    subject: str,
    body: str,
    *,
    html: str | None = None,
    thread: ThreadRef | None = None,
    domain: str,
    now: dt.datetime | None = None,
) -> OutgoingDraft:
    """Build the reminder for ``key`` as a MIME message; ``now`` (aware) becomes its Date.
    Without ``sender`` the message has no From: Gmail fills in the mailbox's own address."""
    check_header_value("key.scope", key.scope)
    check_header_value("key.invoice_id", key.invoice_id)
    if isinstance(to, str):  # a lone string would be split into characters
        raise TypeError("to must be a sequence of addresses, not a string")
    if not to:
        raise ValueError("to needs at least one address")
    recipients = tuple(_address(f"to[{i}]", value) for i, value in enumerate(to))
    from_address = _address("sender", sender) if sender else None
    check_header_value("subject", subject)
    rfc_message_id = message_id_for(key, domain)

    msg = EmailMessage(policy=policy.SMTP)
    if from_address is not None:
        _set_address_header(msg, "From", (from_address,))
    _set_address_header(msg, "To", recipients)
    _set_text_header(msg, "Subject", subject)
    if now is not None:
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("now must be timezone-aware")
        msg["Date"] = format_datetime(now)
    msg["Message-ID"] = rfc_message_id
    _set_text_header(msg, KEY_HEADER, key.header_value())
    if thread is not None and (references := _references(thread)):
        msg["In-Reply-To"] = references[-1]
        msg["References"] = " ".join(references)

    # Quoted-printable keeps the message 7-bit clean for any transport or mail client, and
    # utf-8 is declared so accents and symbols survive.
    msg.set_content(body, subtype="plain", charset="utf-8", cte="quoted-printable")
    if html is not None:
        msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")

    return OutgoingDraft(
        key=key,
        to=tuple(to),
        subject=subject,
        raw=msg.as_bytes(),
        rfc_message_id=rfc_message_id,
        thread=thread,
    )


def _set_text_header(msg: EmailMessage, name: str, value: str) -> None:
    """Set an unstructured header; non-ASCII text is RFC 2047-encoded by the legacy encoder.
    CPython 3.11's modern folder drops the space between two encoded words when it splits a long
    non-ASCII header ("1 234,50 € ✓" arrives as "1 234,50 €✓"). The legacy ``Header`` encoder
    keeps every space inside the encoded text and its lines within 78 characters, so the
    generator writes the stored value as it is (``set_raw``)."""
    if value.isascii() and len(name) + 2 + len(value) <= _MAX_LINE:
        msg[name] = value
        return
    # The modern folder would also break a long ASCII value right after "Subject:", which
    # readers then show with a leading space; the legacy one folds at a later blank.
    charset = "us-ascii" if value.isascii() else "utf-8"
    encoded = Header(value, charset, maxlinelen=_MAX_LINE - 2, header_name=name)
    msg.set_raw(name, encoded.encode(linesep=msg.policy.linesep))


def _set_address_header(msg: EmailMessage, name: str, addresses: Sequence[Address]) -> None:
    """Set an address header; non-ASCII display names are encoded as in ``_set_text_header``."""
    if all(a.display_name.isascii() for a in addresses):
        msg[name] = addresses
        return
    linesep = msg.policy.linesep
    parts = []
    for i, address in enumerate(addresses):
        if address.display_name.isascii():
            parts.append(formataddr((address.display_name, address.addr_spec)))
            continue
        words = Header(address.display_name, "utf-8", header_name=name if i == 0 else None)
        parts.append(f"{words.encode(linesep=linesep)}{linesep} <{address.addr_spec}>")
    # One address per line keeps every line short, so the generator does not refold it.
    msg.set_raw(name, f",{linesep} ".join(parts))


def _address(field: str, value: str) -> Address:
    """Parse one mailbox (``a@b`` or ``Name <a@b>``); anything else is a ValueError."""
    check_header_value(field, value)
    header = policy.default.header_factory("To", value)
    addresses: tuple[Address, ...] = getattr(header, "addresses", ())
    defects: tuple[object, ...] = getattr(header, "defects", ())
    if len(addresses) != 1 or defects or not addresses[0].username or not addresses[0].domain:
        raise ValueError(f"{field} must be exactly one email address: {value!r}")
    address: Address = addresses[0]
    if not address.domain.isascii():
        # An addr-spec cannot carry RFC 2047 words: an internationalised domain goes as its
        # IDNA (punycode) form, which every mail system routes.
        try:
            ascii_domain = address.domain.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise ValueError(f"{field} has an invalid domain: {value!r}") from exc
        address = Address(address.display_name, address.username, ascii_domain)
    return address


def _references(thread: ThreadRef) -> list[str]:
    """In-Reply-To is the earlier draft; References adds the thread's root when it is known."""
    root, parent = thread.thread_id, thread.rfc_message_id
    for field in ("thread_id", "subject", "rfc_message_id"):
        if (value := getattr(thread, field)) is not None:
            check_header_value(f"thread.{field}", value)
    if parent is not None and not _MSG_ID.match(parent):
        raise ValueError(f"thread.rfc_message_id {parent!r} is not a <id@domain> Message-ID")
    # Gmail's threadId is an opaque hex id; a Maildir sink uses the root's Message-ID as the
    # thread id, which belongs first in References so every client threads the chain.
    ids = [root] if root is not None and _MSG_ID.match(root) and root != parent else []
    if parent is not None:
        ids.append(parent)
    return ids
