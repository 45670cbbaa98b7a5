"""Intuit OAuth 2 and polite HTTP for the QuickBooks Online API.

An access token lasts an hour; the refresh token gets a new one at Intuit's token endpoint.
Intuit rotates refresh tokens, killing the previous one, so the newest is saved to a 0600 file
(QBO_TOKEN_FILE, read on restart) before its access token is used; one that cannot be saved is
printed once on stderr and the run stops. Tokens are never logged nor put in error messages.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests

from service.adapters.google_credentials import save_token
from service.adapters.http_retry import RetryPolicy, Transient, retry_after_seconds
from service.ports import AuthorizationError, Clock, utc_now

log = logging.getLogger(__name__)

_EARLY_REFRESH = dt.timedelta(seconds=60)  # refresh before expiry, not on the first 401


class QuickBooksError(Exception):
    """QuickBooks could not be read; ``code`` is a short machine-readable reason."""

    def __init__(self, message: str, *, code: str = "quickbooks_error") -> None:
        super().__init__(message)
        self.code = code


class QuickBooksAuthorizationError(AuthorizationError):
    """The connection to QuickBooks was refused: reconnect the app for a new refresh token."""

    def __init__(self, message: str = "QuickBooks authorisation failed: reconnect the app") -> None:
        super().__init__(message)
        self.code = "quickbooks_unauthorized"


# QBO allows 500 requests a minute per company; a 429 says wait, Retry-After how long.
QBO_RETRY = RetryPolicy(max_attempts=5, max_total_s=120.0, base_delay_s=1.0, max_delay_s=60.0)


class _Refused(Transient):
    """A 429 or 5xx; ``response`` is the answer the caller gets when the policy gives up."""

    def __init__(self, response: requests.Response) -> None:
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        if retry_after is None and response.status_code == 429:
            retry_after = 60.0  # Intuit: on a 429, "wait 60 seconds before retrying"
        super().__init__(f"QuickBooks answered {response.status_code}", retry_after=retry_after)
        self.response = response


def send_with_retries(
    call: Callable[[], requests.Response], policy: RetryPolicy, sleep: Callable[[float], None]
) -> requests.Response:
    """``call()`` again after 429, 5xx or a transport error, as ``policy`` allows."""

    def attempt() -> requests.Response:
        try:
            response = call()
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise Transient(f"QuickBooks is unreachable: {type(exc).__name__}") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise _Refused(response)
        return response

    try:
        return policy.run(attempt, sleep=sleep)
    except _Refused as exc:
        return exc.response
    except Transient as exc:
        raise QuickBooksError(str(exc), code="unavailable") from None


class RefreshTokenFile:
    """The newest refresh token, kept beside the ledger with owner-only permissions."""

    def __init__(self, path: Path, configured: str) -> None:
        self.path = path
        # A token derived from an older QBO_REFRESH_TOKEN is stale once the app is reconnected
        # and the setting changed: the file remembers which configured token it descends from.
        self._seed = hashlib.sha256(configured.encode()).hexdigest()[:16]

    def load(self) -> str | None:
        """The stored token when it descends from the configured one, else None."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("seed") != self._seed:
            return None
        token = data.get("refresh_token")
        return token if isinstance(token, str) and token else None

    def save(self, token: str) -> None:
        """Replace the stored token atomically (0600); if that fails, print it once and stop."""
        try:
            save_token(self.path, json.dumps({"seed": self._seed, "refresh_token": token}))
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            # The only copy left is in memory: hand it to the operator (never to the logs).
            print(
                f"invoice-collector: Intuit rotated the QuickBooks refresh token and it could "
                f"not be saved to {self.path} ({reason}); the previous one no longer works. "
                f"Set QBO_REFRESH_TOKEN={token} (printed once).",
                file=sys.stderr,
                flush=True,
            )
            raise QuickBooksError(
                f"the rotated QuickBooks refresh token could not be saved to {self.path} "
                f"({reason}); it was printed once on stderr: set QBO_REFRESH_TOKEN to it",
                code="token_not_saved",
            ) from None

    def check_writable(self) -> None:
        """Raise QuickBooksError unless a token can be saved here: made in the file's directory."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with tempfile.NamedTemporaryFile(dir=self.path.parent, prefix=f".{self.path.name}."):
                pass
        except OSError as exc:
            raise QuickBooksError(
                f"cannot save QuickBooks tokens in {self.path.parent} "
                f"({exc.strerror or type(exc).__name__}); nothing was asked of Intuit: "
                "set QBO_TOKEN_FILE to a writable path in the state directory",
                code="token_file_unwritable",
            ) from None


class IntuitTokens:
    """Access tokens for one QuickBooks company, refreshed at Intuit's token endpoint."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        *,
        token_url: str,
        session: requests.Session,
        token_file: RefreshTokenFile,
        sleep: Callable[[float], None] = time.sleep,
        clock: Clock = utc_now,
    ) -> None:
        self._client = (client_id, client_secret)
        self._file = token_file
        self._refresh_token = token_file.load() or refresh_token
        self._token_url = token_url
        self._session = session
        self._sleep = sleep
        self._clock = clock
        self._access: str | None = None
        self._expires_at = dt.datetime.min.replace(tzinfo=dt.UTC)

    def access_token(self) -> str:
        """A token valid for at least another minute."""
        if self._access is None or self._clock() + _EARLY_REFRESH >= self._expires_at:
            return self.refresh()
        return self._access

    def refresh(self) -> str:
        """Trade the refresh token for a new access token (and keep a rotated refresh token)."""
        # Intuit may rotate it here, and the old one then stops working: ask only if it can be kept.
        self._file.check_writable()
        response = send_with_retries(
            lambda: self._session.post(
                self._token_url,
                data={"grant_type": "refresh_token", "refresh_token": self._refresh_token},
                auth=self._client,  # HTTP Basic with the app's client id and secret
                headers={"Accept": "application/json"},
                timeout=30,
            ),
            QBO_RETRY,
            self._sleep,
        )
        if response.status_code in (400, 401):
            # invalid_grant: the refresh token expired or was revoked; only reconnecting helps.
            raise QuickBooksAuthorizationError(
                "QuickBooks refused the refresh token: reconnect the app and set QBO_REFRESH_TOKEN"
            )
        if response.status_code != 200:
            raise QuickBooksError(
                f"Intuit's token endpoint answered {response.status_code}", code="unavailable"
            )
        body = response.json()
        rotated = body.get("refresh_token")
        if isinstance(rotated, str) and rotated and rotated != self._refresh_token:
            # From now on only `rotated` works: keep it before anything uses the access token.
            self._refresh_token = rotated
            self._file.save(rotated)
        self._access = str(body["access_token"])
        self._expires_at = self._clock() + dt.timedelta(seconds=int(body.get("expires_in", 3600)))
        log.info("quickbooks access token refreshed", extra={"expires_in": body.get("expires_in")})
        return self._access
