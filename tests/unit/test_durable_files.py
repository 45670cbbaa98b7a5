"""The token file: owner-only, atomic, durable, and safe when two workers save at once."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from service.adapters.google_credentials import save_token


def test_token_file_is_owner_only_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "state" / "qbo_token.json"
    save_token(path, '{"refresh_token": "one"}')
    save_token(path, '{"refresh_token": "two"}')
    assert path.read_text() == '{"refresh_token": "two"}'
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["qbo_token.json"]


def test_the_directory_is_synced_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "token.json"
    synced: list[tuple[str, bool]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file", path.exists()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    save_token(path, "{}")
    # The file's bytes first, then (once renamed into place) the directory entry.
    assert synced == [("file", False), ("dir", True)]


def test_two_workers_saving_at_once_both_succeed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A rotated refresh token that fails to save is printed and the run stops, so a second
    # worker saving while the first is mid-write must not break the first one's rename.
    path = tmp_path / "token.json"
    real_fsync = os.fsync
    interleaved = []

    def fsync(fd: int) -> None:
        if not interleaved and not stat.S_ISDIR(os.fstat(fd).st_mode):
            interleaved.append(True)
            save_token(path, '{"refresh_token": "second"}')  # the other worker, start to end
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    save_token(path, '{"refresh_token": "first"}')
    assert interleaved
    assert path.read_text() == '{"refresh_token": "first"}'  # the last rename wins, whole
    assert [p.name for p in tmp_path.iterdir()] == ["token.json"]
