"""Durable file writes: a rename or a link survives a crash only once its directory is synced."""

from __future__ import annotations

import os
from pathlib import Path


def sync_directory(path: Path) -> None:
    """fsync the directory ``path``, making a rename or link into it durable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open a directory; there is nothing to sync then
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
