"""Drafts as ``.eml`` files in a standard Maildir: the embedded default, opens in any client.

A draft is written to ``tmp/``, fsynced, then renamed into ``new/`` (atomic on one
filesystem), so a reader never sees half a message and a crash leaves at most a stray file in
``tmp/``. The file name carries a digest of the draft key, so ``find`` can adopt a draft made
before a crash; the ``X-Invoice-Collector-Key`` header inside confirms the match.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email import policy
from email.parser import BytesHeaderParser
from pathlib import Path

from service.ports import CreatedDraft, DraftKey, OutgoingDraft, SinkError

KEY_HEADER = "X-Invoice-Collector-Key"
LOCK_NAME = "invoice-collector.lock"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def key_digest(key: DraftKey) -> str:
    """A short, file-name-safe digest that identifies ``key`` (its readable part may collide)."""
    return hashlib.sha256(key.header_value().encode("utf-8")).hexdigest()[:16]


def _safe(text: str, limit: int) -> str:
    return _UNSAFE.sub("_", text)[:limit].strip("_") or "x"


def draft_file_name(key: DraftKey, *, now: float | None = None) -> str:
    """A unique Maildir name led by a readable form and a digest of ``key``.

    The unique part follows the Maildir convention (time, pid, random, host) so names never
    collide across processes or hosts sharing the directory.
    """
    seconds = time.time() if now is None else now
    host = _safe(socket.gethostname(), 40)
    unique = f"{int(seconds)}.P{os.getpid()}R{secrets.token_hex(6)}.{host}"
    return f"ic-{_safe(key.invoice_id, 40)}-s{key.stage}-{key_digest(key)}.{unique}.eml"


class MaildirSink:
    """The DraftSink port on a local Maildir (``tmp/``, ``new/``, ``cur/``)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.root = Path(path).expanduser().resolve()
        for sub in ("tmp", "new", "cur"):
            # 0700: drafts hold clients' names, amounts and addresses.
            (self.root / sub).mkdir(mode=0o700, parents=True, exist_ok=True)

    def create(self, draft: OutgoingDraft) -> CreatedDraft:
        """Write ``draft`` atomically into ``new/``; an existing draft for the key is adopted."""
        try:
            with self._locked():
                # Find-before-create under the lock: two processes creating the same key on
                # this host end with one file, the second adopting the first's.
                existing = self.find(draft)
                if existing is not None:
                    return existing
                return self._write(draft)
        except OSError as exc:
            raise SinkError(f"cannot write to the Maildir: {exc.strerror}", retryable=True) from exc

    def find(self, draft: OutgoingDraft) -> CreatedDraft | None:
        """The draft already in ``new/`` or ``cur/`` for ``draft.key``, or None."""
        marker = f"-{key_digest(draft.key)}."
        wanted = draft.key.header_value()
        for sub in ("new", "cur"):
            directory = self.root / sub
            for name in sorted(os.listdir(directory)):
                if not name.startswith("ic-") or marker not in name:
                    continue
                path = directory / name
                try:
                    with path.open("rb") as handle:
                        headers = BytesHeaderParser(policy=policy.default).parse(handle)
                except FileNotFoundError:  # a mail client moved it new/ -> cur/ meanwhile
                    continue
                if str(headers.get(KEY_HEADER, "")) != wanted:
                    continue
                return self._created(draft, path, str(headers.get("Message-ID", "")) or None)
        return None

    def _write(self, draft: OutgoingDraft) -> CreatedDraft:
        name = draft_file_name(draft.key)
        tmp_path = self.root / "tmp" / name
        # Maildir files use the local line ending; the message is otherwise byte-identical.
        data = draft.raw.replace(b"\r\n", b"\n")
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        new_path = self.root / "new" / name
        os.rename(tmp_path, new_path)
        _fsync_dir(self.root / "new")  # make the rename itself durable
        return self._created(draft, new_path, draft.rfc_message_id)

    def _created(self, draft: OutgoingDraft, path: Path, message_id: str | None) -> CreatedDraft:
        # Maildir's unique name is the file name up to the ":2,<flags>" info a client appends
        # when it moves the file into cur/.
        draft_id = path.name.split(":", 1)[0]
        thread = draft.thread
        thread_id = (thread.thread_id or thread.rfc_message_id) if thread is not None else None
        return CreatedDraft(
            draft_id=draft_id,
            message_id=message_id,
            thread_id=thread_id or message_id,
            rfc_message_id=message_id,
            url=path.as_uri(),
        )

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # flock is per host (not over NFS); across hosts, the ledger is what serialises a key.
        fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
