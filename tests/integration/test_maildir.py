"""The Maildir sink on a real temporary directory: atomic writes, parseable .eml, adoption."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from service.adapters.maildir import MaildirSink, draft_file_name
from service.ports import DraftKey, EntryState, LedgerEntry, OutgoingDraft, SinkError, ThreadRef
from service.usecases.message import build_draft

pytestmark = pytest.mark.timeout(20)  # a hang (lock, deadlock) fails fast, not at 300 s

NOW = dt.datetime(2025, 1, 22, 9, 0, tzinfo=dt.UTC)
KEY = DraftKey("/srv/invoices.csv", "INV-001", 7)


def _draft(key: DraftKey = KEY, thread: ThreadRef | None = None) -> OutgoingDraft:
    return build_draft(
        key,
        ["Zoë Müller <zoe@example.com>", "ap@example.com"],
        "Acme Billing <billing@acme.test>",
        f"Reminder: invoice {key.invoice_id} is overdue",
        "Dear Zoë,\n\nInvoice INV-001 (€1,234.50) is 7 days overdue.\n",
        thread=thread,
        domain="acme.test",
        now=NOW,
    )


def _files(root: Path, sub: str) -> list[Path]:
    return sorted((root / sub).iterdir())


def test_draft_is_written_into_new_as_a_parseable_eml(tmp_path: Path) -> None:
    sink = MaildirSink(tmp_path / "Drafts")
    draft = _draft()

    created = sink.create(draft)

    [path] = _files(sink.root, "new")
    assert _files(sink.root, "tmp") == []
    assert path.name == created.draft_id
    assert path.name.startswith("ic-INV-001-s7-") and path.name.endswith(".eml")
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert msg["X-Invoice-Collector-Key"] == "/srv/invoices.csv/INV-001/7"
    assert msg["Message-ID"] == draft.rfc_message_id
    assert msg["Subject"] == "Reminder: invoice INV-001 is overdue"
    assert [a.addr_spec for a in msg["To"].addresses] == ["zoe@example.com", "ap@example.com"]
    assert msg["To"].addresses[0].display_name == "Zoë Müller"
    assert msg["From"].addresses[0].addr_spec == "billing@acme.test"
    body = msg.get_body(("plain",))
    assert body is not None
    assert "€1,234.50" in body.get_content()
    assert created.message_id == created.rfc_message_id == draft.rfc_message_id
    assert created.thread_id == draft.rfc_message_id  # the first reminder starts its thread


def test_draft_file_and_folders_are_private(tmp_path: Path) -> None:
    sink = MaildirSink(tmp_path / "Drafts")

    sink.create(_draft())

    [path] = _files(sink.root, "new")
    assert path.stat().st_mode & 0o777 == 0o600
    assert (sink.root / "new").stat().st_mode & 0o777 == 0o700


def test_find_returns_nothing_before_any_draft(tmp_path: Path) -> None:
    assert MaildirSink(tmp_path / "Drafts").find(_draft()) is None


def test_after_a_crash_find_and_create_adopt_the_existing_draft(tmp_path: Path) -> None:
    first = MaildirSink(tmp_path / "Drafts").create(_draft())
    # The process died before the ledger recorded the draft; a new process starts over.
    restarted = MaildirSink(tmp_path / "Drafts")

    found = restarted.find(_draft())
    again = restarted.create(_draft())

    assert found == first
    assert again == first
    assert len(_files(restarted.root, "new")) == 1


def test_half_written_file_left_in_tmp_is_ignored(tmp_path: Path) -> None:
    sink = MaildirSink(tmp_path / "Drafts")
    (sink.root / "tmp" / draft_file_name(KEY)).write_bytes(b"X-Invoice-Collector-Key: /srv/inv")

    assert sink.find(_draft()) is None
    sink.create(_draft())
    assert len(_files(sink.root, "new")) == 1


def test_draft_moved_to_cur_by_a_mail_client_is_still_found(tmp_path: Path) -> None:
    sink = MaildirSink(tmp_path / "Drafts")
    created = sink.create(_draft())
    [path] = _files(sink.root, "new")
    path.rename(sink.root / "cur" / f"{path.name}:2,DS")

    found = sink.find(_draft())

    assert found is not None
    assert found.draft_id == created.draft_id
    assert found.url == created.url  # the link written next to the row still names it


def test_link_names_the_folder_and_the_message_id_not_the_file(tmp_path: Path) -> None:
    created = MaildirSink(tmp_path / "Drafts").create(_draft())

    folder = (tmp_path / "Drafts").resolve().as_uri()
    assert created.url == f"{folder}#{_draft().rfc_message_id.strip('<>')}"
    assert "/new/" not in (created.url or "")


def test_in_drafts_follows_the_file_through_a_mail_clients_moves(tmp_path: Path) -> None:
    sink = MaildirSink(tmp_path / "Drafts")
    created = sink.create(_draft())
    entry = LedgerEntry(KEY, EntryState.CREATED, NOW, NOW, draft_id=created.draft_id)
    assert sink.in_drafts(entry)

    path = sink.root / "new" / created.draft_id
    read = sink.root / "cur" / f"{created.draft_id}:2,S"
    path.rename(read)
    assert sink.in_drafts(entry)
    flagged = read.rename(sink.root / "cur" / f"{created.draft_id}:2,FRS")
    assert sink.in_drafts(entry)

    trashed = flagged.rename(sink.root / "cur" / f"{created.draft_id}:2,ST")
    assert not sink.in_drafts(entry)  # marked deleted: the client expunges it
    trashed.unlink()
    assert not sink.in_drafts(entry)


def test_a_full_folder_is_never_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sink = MaildirSink(tmp_path / "Drafts")
    for i in range(50):
        sink.create(_draft(DraftKey(KEY.scope, f"OLD-{i}", 7)))
    moved = sink.create(_draft())
    (sink.root / "new" / moved.draft_id).rename(sink.root / "cur" / f"{moved.draft_id}:2,S")

    def refuse(*_: object) -> None:
        raise AssertionError("the Maildir was listed")

    monkeypatch.setattr(os, "scandir", refuse)
    monkeypatch.setattr(os, "listdir", refuse)
    fresh = sink.create(_draft(DraftKey(KEY.scope, "NEW-1", 7)))
    entry = LedgerEntry(KEY, EntryState.CREATED, NOW, NOW, draft_id=moved.draft_id)

    assert sink.find(_draft()) == moved
    assert sink.create(_draft()) == moved  # adopted where the client left it, not doubled
    assert sink.in_drafts(entry)
    assert fresh.draft_id == draft_file_name(DraftKey(KEY.scope, "NEW-1", 7))


def test_file_named_like_the_key_but_holding_another_key_is_not_adopted(tmp_path: Path) -> None:
    sink = MaildirSink(tmp_path / "Drafts")
    other = DraftKey(KEY.scope, KEY.invoice_id, 14)
    sink.create(_draft(other))
    [other_path] = _files(sink.root, "new")
    # The name KEY's draft would have, but the header says stage 14.
    forged = draft_file_name(KEY)
    shutil.copy(other_path, sink.root / "new" / forged)

    assert sink.find(_draft()) is None
    with pytest.raises(SinkError) as refused:
        sink.create(_draft())  # never overwritten, never adopted
    assert not refused.value.retryable


def test_followup_stays_in_the_thread_of_the_first_reminder(tmp_path: Path) -> None:
    sink = MaildirSink(tmp_path / "Drafts")
    first = sink.create(_draft())
    thread = ThreadRef(first.thread_id, first.rfc_message_id, "Reminder: invoice INV-001")

    second = sink.create(_draft(DraftKey(KEY.scope, KEY.invoice_id, 14), thread=thread))

    assert second.thread_id == first.rfc_message_id
    assert second.draft_id != first.draft_id
    path = sink.root / "new" / second.draft_id
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert msg["In-Reply-To"] == first.rfc_message_id


def test_concurrent_creates_of_one_key_leave_one_file(tmp_path: Path) -> None:
    sinks = [MaildirSink(tmp_path / "Drafts") for _ in range(8)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        created = list(pool.map(lambda s: s.create(_draft()), sinks))

    assert len({c.draft_id for c in created}) == 1
    assert len(_files(sinks[0].root, "new")) == 1


def test_unwritable_maildir_is_a_retryable_sink_error(tmp_path: Path) -> None:
    sink = MaildirSink(tmp_path / "Drafts")
    os.rmdir(sink.root / "tmp")
    (sink.root / "tmp").write_text("not a directory")

    with pytest.raises(SinkError) as failure:
        sink.create(_draft())

    assert failure.value.retryable
