"""Plumbing for Google API adapters: clients, a transport that never re-sends, pacing, errors.

* httplib2, the client library's default transport, silently re-sends a request once when the
  connection drops before the answer arrives, POSTs included: a second draft whenever Gmail
  stored the first. ``RequestsHttp`` sends each request once and lets the adapter decide.
* httplib2 objects are not thread-safe; the documented pattern is one ``Http`` per thread,
  passed to ``request.execute(http=...)``: ``ThreadLocalHttp``.
* Gmail allows 15,000 quota units per user per rolling minute, however many processes spend
  them: callers pace through a ``Pacer`` that every worker and instance shares.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Protocol

import google.auth.credentials
import google.oauth2.credentials
import google_auth_httplib2
import httplib2
import requests
import urllib3.exceptions
from googleapiclient.discovery import build

GoogleCredentials = google.auth.credentials.Credentials


def credentials_from(credentials: GoogleCredentials | str) -> GoogleCredentials:
    """A credential object from either a bare access token or an existing credential."""
    if isinstance(credentials, str):
        # A bare token cannot refresh: a 401 surfaces as RefreshError, which callers treat as 401.
        return google.oauth2.credentials.Credentials(token=credentials)  # type: ignore[no-untyped-call]
    return credentials


def build_service(
    api: str, version: str, credentials: GoogleCredentials | str, endpoint: str | None
) -> Any:
    """An offline discovery client (bundled documents); ``endpoint``: an emulator or a proxy."""
    return build(
        api,
        version,
        credentials=credentials_from(credentials),
        static_discovery=True,
        # Exactly one trailing slash: urljoin drops a last path segment without it.
        client_options={"api_endpoint": endpoint.rstrip("/") + "/"} if endpoint else None,
        cache_discovery=False,
    )


class TransportFailure(httplib2.HttpLib2Error):  # type: ignore[misc]  # httplib2 is untyped
    """No answer from Google; ``sent``: False only if no connection was made (refused,
    unresolved). An HttpLib2Error, so google-auth's httplib2 adapter makes it a TransportError."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class RequestsHttp:
    """The slice of ``httplib2.Http`` the client library uses, on requests: each call is sent
    once (requests' adapters do not retry by default); a failure raises TransportFailure."""

    def __init__(self) -> None:
        self.session = requests.Session()

    def request(
        self,
        uri: str,
        method: str = "GET",
        body: bytes | str | None = None,
        headers: dict[str, str] | None = None,
        **_: object,
    ) -> tuple[httplib2.Response, bytes]:
        """Send one request; return (httplib2.Response, body bytes) as httplib2 does."""
        try:
            reply = self.session.request(method, uri, data=body, headers=headers, timeout=30)
        except requests.RequestException as exc:
            # urllib3 says why a connection failed in MaxRetryError.reason; refused, unresolved
            # and connect timeouts are ConnectTimeoutErrors, raised before a byte is sent.
            reason = getattr(exc.args[0], "reason", None) if exc.args else None
            unsent = isinstance(reason, urllib3.exceptions.ConnectTimeoutError)
            # Only the exception type: messages can carry URLs with query strings.
            message = f"{type(exc).__name__} talking to Google"
            raise TransportFailure(message, sent=not unsent) from exc
        # requests already decoded the body: its content-encoding no longer applies.
        fields = {k.lower(): v for k, v in reply.headers.items() if k.lower() != "content-encoding"}
        response = httplib2.Response({**fields, "status": str(reply.status_code)})
        response.reason = reply.reason
        return response, reply.content


class ThreadLocalHttp(threading.local):
    """``.http``: this thread's authorised transport (``threading.local`` inits once per thread)."""

    def __init__(self, credentials: GoogleCredentials) -> None:
        self.http = google_auth_httplib2.AuthorizedHttp(credentials, http=RequestsHttp())


class Pacer(Protocol):
    """Spaces the calls on one mailbox to its quota across every worker and instance."""

    def acquire(self, mailbox: str, units: float) -> float:
        """Wait until ``units`` of ``mailbox``'s quota are free; return the seconds waited."""


# Google's 403 "slow down" reasons: v1 APIs name them in errors[], v4 ones in details[] (ErrorInfo).
_RATE_LIMITS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "RATE_LIMIT_EXCEEDED"})


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
    return status == 429 or (status == 403 and bool(reasons & _RATE_LIMITS))
