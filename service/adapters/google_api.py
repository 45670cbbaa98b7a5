"""Plumbing for Google API adapters: clients, a transport that never re-sends, pacing, errors.

Facts this module designs for (checked against the client library and Google's docs):

* httplib2, the client library's default transport, silently re-sends a request once when the
  connection drops before the response arrives — POSTs included. For ``drafts.create`` that
  means a second draft whenever Gmail stored the first but the answer was lost. We therefore
  plug in a transport on ``requests`` that sends each request exactly once and lets the
  adapter decide (``RequestsHttp``).
* httplib2 objects are not thread-safe; the documented pattern is one ``Http`` per thread,
  passed to ``request.execute(http=...)``. ``ThreadLocalHttp`` does that.
* Gmail allows 15,000 quota units per user per rolling minute; callers pace with ``Pacer``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import google.auth.credentials
import google.oauth2.credentials
import google_auth_httplib2
import httplib2
import requests
from googleapiclient.discovery import build

GoogleCredentials = google.auth.credentials.Credentials


# ---------------------------------------------------------------------------------------------
# Credentials and clients
# ---------------------------------------------------------------------------------------------
def credentials_from(credentials: GoogleCredentials | str) -> GoogleCredentials:
    """A credential object from either a bare access token or an existing credential."""
    if isinstance(credentials, str):
        # A bare token cannot refresh: a 401 surfaces as RefreshError, which callers treat as 401.
        return google.oauth2.credentials.Credentials(token=credentials)  # type: ignore[no-untyped-call]
    return credentials


def normalise_endpoint(endpoint: str | None) -> str | None:
    """The base URL with exactly one trailing slash (urljoin drops a last segment without it)."""
    return endpoint.rstrip("/") + "/" if endpoint else None


def build_service(
    api: str, version: str, credentials: GoogleCredentials | None, endpoint: str | None
) -> Any:
    """A discovery client that works offline (the library ships its discovery documents)."""
    return build(
        api,
        version,
        credentials=credentials,
        static_discovery=True,
        client_options={"api_endpoint": endpoint} if endpoint else None,
        cache_discovery=False,
    )


class TransportFailure(httplib2.HttpLib2Error):  # type: ignore[misc]  # httplib2 is untyped
    """The request may or may not have reached Google: connection refused, dropped or timed out.

    Subclasses HttpLib2Error so google-auth's httplib2 adapter turns it into its own
    TransportError during token refresh.
    """


class RequestsHttp:
    """The slice of ``httplib2.Http`` the client library uses, on a requests Session.

    Each call is sent once (requests' adapters do not retry by default); failures raise
    TransportFailure instead of being re-sent behind our back.
    """

    def __init__(self, timeout_s: float = 30.0) -> None:
        self.timeout = timeout_s
        self.session = requests.Session()

    def request(
        self,
        uri: str,
        method: str = "GET",
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        redirections: int = 5,
        connection_type: object = None,
        **_: object,
    ) -> tuple[httplib2.Response, bytes]:
        """Send one request; return (httplib2.Response, body bytes) as httplib2 does."""
        try:
            reply = self.session.request(
                method,
                uri,
                data=body,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=redirections > 0,
            )
        except requests.RequestException as exc:
            # Only the exception type: messages can carry URLs with query strings.
            raise TransportFailure(f"{type(exc).__name__} talking to Google") from exc
        fields: dict[str, str] = {k.lower(): v for k, v in reply.headers.items()}
        fields.pop("content-encoding", None)  # requests already decoded the body
        fields["status"] = str(reply.status_code)
        response = httplib2.Response(fields)
        response.reason = reply.reason
        return response, reply.content

    def close(self) -> None:
        """Close pooled connections."""
        self.session.close()


class ThreadLocalHttp:
    """One authorised transport per thread (httplib2-style objects are not thread-safe)."""

    def __init__(self, credentials: GoogleCredentials, timeout_s: float) -> None:
        self._credentials = credentials
        self._timeout_s = timeout_s
        self._local = threading.local()
        self._all: list[RequestsHttp] = []
        self._lock = threading.Lock()

    def get(self) -> Any:
        """This thread's AuthorizedHttp (adds the bearer token, refreshes on 401)."""
        authed = getattr(self._local, "http", None)
        if authed is None:
            raw = RequestsHttp(self._timeout_s)
            with self._lock:
                self._all.append(raw)
            authed = google_auth_httplib2.AuthorizedHttp(self._credentials, http=raw)
            self._local.http = authed
        return authed

    def close(self) -> None:
        """Close every thread's connections."""
        with self._lock:
            for raw in self._all:
                raw.close()
            self._all.clear()
        self._local = threading.local()


# ---------------------------------------------------------------------------------------------
# Pacing
# ---------------------------------------------------------------------------------------------
class Pacer:
    """A thread-safe token bucket in quota units: ``acquire(n)`` blocks until n units are free."""

    def __init__(
        self,
        units_per_second: float,
        burst_units: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
        self.configure(units_per_second, burst_units)
        self._tokens = self._burst
        self._stamp = clock()

    def configure(self, units_per_second: float, burst_units: float | None = None) -> None:
        """Change the rate (and bucket size, default one second's worth)."""
        if units_per_second <= 0:
            raise ValueError("units_per_second must be positive")
        with self._lock:
            self._rate = units_per_second
            self._burst = burst_units if burst_units is not None else units_per_second
            if hasattr(self, "_tokens"):
                self._tokens = min(self._tokens, self._burst)

    @property
    def rate(self) -> float:
        """Units per second."""
        return self._rate

    def acquire(self, units: float) -> float:
        """Take ``units``, sleeping as needed; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
                self._stamp = now
                # A request bigger than the bucket waits for a full bucket, then overdraws.
                need = min(units, self._burst)
                # The epsilon stops float rounding from leaving a sliver that never refills.
                if self._tokens >= need - 1e-9:
                    self._tokens -= units
                    return waited
                delay = (need - self._tokens) / self._rate
            self._sleep(delay)
            waited += delay


_PACERS: dict[str, Pacer] = {}
_PACERS_LOCK = threading.Lock()


def pacer_for(mailbox: str, units_per_second: float, burst_units: float | None = None) -> Pacer:
    """The process-wide pacer of one mailbox (created, or re-rated, on demand)."""
    with _PACERS_LOCK:
        pacer = _PACERS.get(mailbox)
        if pacer is None:
            pacer = _PACERS[mailbox] = Pacer(units_per_second, burst_units)
        else:
            pacer.configure(units_per_second, burst_units)
        return pacer


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------
# Google's 403 "slow down" reasons: v1 APIs name them in errors[], v4 ones in details[] (ErrorInfo).
RATE_LIMIT_REASONS = frozenset(
    {"rateLimitExceeded", "userRateLimitExceeded", "RATE_LIMIT_EXCEEDED"}
)


def error_details(content: bytes | str | None) -> tuple[frozenset[str], str]:
    """(reasons, message) from a Google JSON error body: errors[] and details[] reasons, status."""
    try:
        error = json.loads(content or b"{}").get("error") or {}
        items = [*(error.get("errors") or []), *(error.get("details") or [])]
        reasons = {str(i["reason"]) for i in items if isinstance(i, dict) and i.get("reason")}
        if error.get("status"):
            reasons.add(str(error["status"]))
        return frozenset(reasons), str(error.get("message") or "")[:200]
    except (ValueError, AttributeError, TypeError):
        return frozenset(), ""


def is_rate_limited(status: int, reasons: frozenset[str]) -> bool:
    """Google asked us to slow down: a 429, or a 403 whose reason is a rate limit."""
    return status == 429 or (status == 403 and bool(reasons & RATE_LIMIT_REASONS))
