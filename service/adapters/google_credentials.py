"""The server's own Google credentials for headless runs (never the sidebar user's token).

`invoice-collector auth` stores an authorised-user token (refresh token included) with 0600
permissions; google-auth refreshes it automatically. Sheets may use a service account instead.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Literal

from google.oauth2 import credentials, service_account

from service.adapters.files import sync_directory

GMAIL_SCOPES = ["https://www.googleapis.com/auth/gmail.compose"]
SHEETS_SCOPES = ["https://www.googleapis.com/auth/spreadsheets"]
ALL_SCOPES = SHEETS_SCOPES + GMAIL_SCOPES


def token_file(configured: Path | None) -> Path:
    """GOOGLE_TOKEN_FILE, else ~/.config/invoice-collector/token.json (XDG_CONFIG_HOME too)."""
    if configured:
        return configured
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "invoice-collector" / "token.json"


def server_credentials(
    scopes: Literal["gmail", "sheets"],
    *,
    token_path: Path | None = None,
    service_account_file: Path | None = None,
) -> Any | None:
    """Stored credentials for ``scopes``, or None when `invoice-collector auth` was never run."""
    if scopes == "sheets" and service_account_file:
        return service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
            str(service_account_file), scopes=SHEETS_SCOPES
        )
    path = token_file(token_path)
    if not path.exists():
        return None
    return credentials.Credentials.from_authorized_user_file(str(path), ALL_SCOPES)  # type: ignore[no-untyped-call]


def save_token(path: Path, token_json: str) -> None:
    """Write the token file readable by its owner only (0600), atomically and durably.

    Intuit kills a rotated refresh token, so a new one lost to a crash means reconnecting the
    app; workers refreshing at once each write their own temporary file (mkstemp, 0600).
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(token_json)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    sync_directory(path.parent)
