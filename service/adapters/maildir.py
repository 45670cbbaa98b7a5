"""Drafts as ``.eml`` files in a standard Maildir: the embedded default, opens in any client.

A draft's file name is a function of its key, so finding it costs a few ``stat`` calls, not a
read of every name in a folder of 100,000 drafts. It is written to ``tmp/``, fsynced, then
hard-linked into ``new/`` (atomic, and refused when the name exists: of two writers of one key,
the second adopts the first's file), so a reader never sees half a message and a crash leaves
at most a stray file in ``tmp/``. The ``X-Invoice-Collector-Key`` header inside confirms a match.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import secrets
from email import policy
from email.parser import BytesHeaderParser
from pathlib import Path
from urllib.parse import quote

from service.adapters.files import sync_directory
from service.ports import (
    KEY_HEADER,
    CreatedDraft,
    DraftKey,
    LedgerEntry,
    OutgoingDraft,
    SinkError,
)

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
# A client moves a seen message from new/ to cur/, appending ":2," and its flags in ASCII order
# (cr.yp.to/proto/maildir.html): every set of the flags but T (trashed) is 32 names to try.
_IN_CUR = [":2," + "".join(f) for n in range(6) for f in itertools.combinations("DFPRS", n)]


def draft_file_name(key: DraftKey) -> str:
    """The Maildir name of ``key``'s draft, unique as the ledger allows one draft per key."""
    # The readable part may collide; the digest of the whole key does not.
    readable = _UNSAFE.sub("_", key.invoice_id)[:40].strip("_") or "x"
    digest = hashlib.sha256(key.header_value().encode("utf-8")).hexdigest()[:16]
    return f"ic-{readable}-s{key.stage}-{digest}.eml"


class MaildirSink:
    """The DraftSink port on a local Maildir (``tmp/``, ``new/``, ``cur/``)."""

    mailbox = None  # a local folder, nobody's Gmail

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.root = Path(path).expanduser().resolve()
        for sub in ("tmp", "new", "cur"):
            # 0700: drafts hold clients' names, amounts and addresses.
            (self.root / sub).mkdir(mode=0o700, parents=True, exist_ok=True)

    def create(self, draft: OutgoingDraft) -> CreatedDraft:
        """Write ``draft`` atomically into ``new/``; an existing draft for the key is adopted."""
        try:
            return self.find(draft) or self._write(draft)
        except OSError as exc:
            raise SinkError(f"cannot write to the Maildir: {exc.strerror}", retryable=True) from exc

    def find(self, draft: OutgoingDraft) -> CreatedDraft | None:
        """The draft already in ``new/`` or ``cur/`` for ``draft.key``, or None."""
        path = self._where(draft_file_name(draft.key))
        if path is None:
            return None
        try:
            with path.open("rb") as handle:
                headers = BytesHeaderParser(policy=policy.default).parse(handle)
        except FileNotFoundError:  # moved (new/ -> cur/, or a flag changed) as we opened it
            return self.find(draft)
        if str(headers.get(KEY_HEADER, "")) != draft.key.header_value():
            return None
        return self._created(draft, path.name, str(headers.get("Message-ID", "")) or None)

    def in_drafts(self, entry: LedgerEntry) -> bool:
        """True while the draft's file is in the folder: a client moves a sent draft to Sent."""
        return bool(entry.draft_id) and self._where(str(entry.draft_id)) is not None

    def _where(self, name: str) -> Path | None:
        # new/ first: a client's move new/ -> cur/ is one rename, so the file is never missed.
        # Plain strings: a Path per name would cost more than the 33 stat calls themselves.
        cur = f"{self.root}/cur/{name}"
        paths = (f"{self.root}/new/{name}", *(cur + info for info in _IN_CUR))
        return next((Path(p) for p in paths if os.path.exists(p)), None)

    def _write(self, draft: OutgoingDraft) -> CreatedDraft:
        name = draft_file_name(draft.key)
        tmp_path = self.root / "tmp" / f"{name}.{os.getpid()}.{secrets.token_hex(6)}"
        # Maildir files use the local line ending; the message is otherwise byte-identical.
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(draft.raw.replace(b"\r\n", b"\n"))
                out.flush()
                os.fsync(out.fileno())
            os.link(tmp_path, self.root / "new" / name)
        except FileExistsError:  # another writer of this key won: adopt its file
            adopted = self.find(draft)
            if adopted is None:
                raise SinkError(
                    f"the Maildir holds another message named {name}", retryable=False
                ) from None
            return adopted
        finally:
            tmp_path.unlink(missing_ok=True)
        sync_directory(self.root / "new")
        return self._created(draft, name, draft.rfc_message_id)

    def _created(self, draft: OutgoingDraft, name: str, message_id: str | None) -> CreatedDraft:
        thread = draft.thread
        thread_id = (thread.thread_id or thread.rfc_message_id) if thread is not None else None
        # The folder and Message-ID, never new/ or cur/: a client moves and renames the file.
        link = self.root.as_uri()
        if message_id:
            link = f"{link}#{quote(message_id.strip('<>'), safe='@')}"
        return CreatedDraft(
            # Maildir's unique name is the file name up to the ":2,<flags>" a client appends.
            draft_id=name.split(":", 1)[0],
            message_id=message_id,
            thread_id=thread_id or message_id,
            rfc_message_id=message_id,
            url=link,
        )
