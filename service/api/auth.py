"""Authentication for every /v1 route: an API key, or a Google ID token from an allowed user.

Both arrive as ``Authorization: Bearer …``. API keys are compared in constant time; anything
else is tried as a Google ID token (``ScriptApp.getIdentityToken()`` in the add-on) when
GOOGLE_CLIENT_ID is set: signature against Google's published certs (cached), issuer,
audience, expiry, a verified email, and the ALLOWED_GOOGLE_IDENTITIES allow-list.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import google.auth.exceptions
import requests
from flask import Request
from google.auth import transport
from google.auth.transport.requests import Request as GoogleRequest
from google.oauth2 import id_token

from service.api.errors import ApiError
from service.config import Settings

log = logging.getLogger(__name__)

GOOGLE_ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
# Google's certs answer with Cache-Control max-age of several hours; without one, an hour.
DEFAULT_CERTS_TTL_S = 3600.0
MAX_CERTS_TTL_S = 24 * 3600.0
CERTS_TIMEOUT_S = 5.0
# Seconds of clock difference tolerated on iat/exp (Google's and ours are both NTP-synced).
CLOCK_SKEW_S = 10
# An unknown key id triggers one re-fetch, at most this often: forged kids must not turn
# every request into a round trip to Google.
REFETCH_AFTER_S = 60.0
_MAX_AGE = re.compile(r"max-age=(\d+)")
_CHALLENGE = 'Bearer realm="invoice-collector"'


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer …`` header, or None."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def key_matches(token: str, keys: Sequence[str]) -> bool:
    """True when ``token`` equals one of ``keys``; compares against all of them, always."""
    supplied = token.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(supplied, key.encode())
    return matched


def key_identity(token: str) -> str:
    """A short fingerprint of an API key: safe to log and to rate-limit by, unlike the key."""
    return "key:" + hashlib.sha256(token.encode()).hexdigest()[:12]


def _unauthorized(message: str) -> ApiError:
    return ApiError(
        401, message, headers={"WWW-Authenticate": f'{_CHALLENGE}, error="invalid_token"'}
    )


def require_api_key(request: Request, keys: Sequence[str]) -> str:
    """Return the caller's identity (the key's short fingerprint) or raise 401."""
    token = bearer_token(request)
    if token is None:
        raise ApiError(
            401,
            "Missing API key: send 'Authorization: Bearer <API key>'.",
            headers={"WWW-Authenticate": _CHALLENGE},
        )
    if not keys or not key_matches(token, keys):
        raise _unauthorized("The API key is not valid.")
    return key_identity(token)


class _CachedResponse:
    """The parts of a google.auth transport Response that id_token reads."""

    def __init__(self, status: int, headers: Mapping[str, str], data: bytes) -> None:
        self.status = status
        self.headers = headers
        self.data = data


class CachingCertsRequest:
    """A google.auth transport Request that keeps successful GETs for their max-age.

    ``id_token.verify_token`` fetches the certs on every call; this keeps one copy per URL
    so a request costs no round trip to Google until the certs expire.
    """

    def __init__(
        self,
        inner: Callable[..., Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._inner = inner or GoogleRequest(requests.Session())
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, float, _CachedResponse]] = {}  # fetched, expires
        self.fetches = 0  # round trips made, for tests and metrics

    def __call__(self, url: str, method: str = "GET", **kwargs: Any) -> _CachedResponse:
        """GET ``url`` from the cache, or over the network when missing or stale."""
        now = self._clock()
        with self._lock:
            hit = self._cache.get(url)
            if method == "GET" and hit is not None and hit[1] > now:
                return hit[2]
        kwargs.setdefault("timeout", CERTS_TIMEOUT_S)
        response = self._inner(url, method=method, **kwargs)
        self.fetches += 1
        cached = _CachedResponse(response.status, dict(response.headers), response.data)
        if method == "GET" and response.status == 200:
            with self._lock:
                self._cache[url] = (now, now + _ttl(cached.headers), cached)
        return cached

    def forget(self, url: str) -> None:
        """Drop the cached copy of ``url`` (the signing key rotated before max-age ran out)."""
        with self._lock:
            self._cache.pop(url, None)

    def fetched_ago(self, url: str) -> float | None:
        """Seconds since ``url`` was fetched into the cache, or None when not cached."""
        with self._lock:
            hit = self._cache.get(url)
        return None if hit is None else self._clock() - hit[0]


def _ttl(headers: Mapping[str, str]) -> float:
    control = next((v for k, v in headers.items() if k.lower() == "cache-control"), "")
    match = _MAX_AGE.search(control)
    if match is None:
        return DEFAULT_CERTS_TTL_S
    return min(float(match.group(1)), MAX_CERTS_TTL_S)


def identity_allowed(email: str, allowed: Sequence[str]) -> bool:
    """True when ``email`` is listed, or its domain is listed as ``@domain``."""
    email = email.lower()
    domain = "@" + email.rpartition("@")[2]
    return any(entry.lower() in (email, domain) for entry in allowed)


class GoogleIdentity:
    """Verifies Google ID tokens for one client id against an allow-list."""

    def __init__(
        self,
        client_id: str,
        allowed: Sequence[str],
        certs_url: str,
        http: CachingCertsRequest | None = None,
    ) -> None:
        # GOOGLE_CLIENT_ID may list several ids (say, the add-on's and a test deployment's).
        self.audience = [part.strip() for part in client_id.split(",") if part.strip()]
        self.allowed = tuple(allowed)
        self.certs_url = certs_url
        self.http = http or CachingCertsRequest()

    def verify(self, token: str) -> str:
        """The caller's identity (``google:<email>``), or ApiError 401/403/503."""
        claims = self._claims(token)
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise _unauthorized("The Google ID token was not issued by Google.")
        email = claims.get("email")
        if not isinstance(email, str) or claims.get("email_verified") is not True:
            raise _unauthorized("The Google ID token carries no verified email.")
        if not identity_allowed(email, self.allowed):
            log.info("google identity refused", extra={"domain": email.rpartition("@")[2]})
            raise ApiError(403, "This Google account is not allowed to use this service.")
        return "google:" + email.lower()

    def _claims(self, token: str) -> Mapping[str, Any]:
        try:
            return self._verify(token)
        except ValueError as exc:
            # An unknown key id usually means Google rotated its keys: fetch them once more.
            fetched_ago = self.http.fetched_ago(self.certs_url)
            if "key id" not in str(exc) or fetched_ago is None or fetched_ago < REFETCH_AFTER_S:
                raise self._refused(exc) from None
            self.http.forget(self.certs_url)
            try:
                return self._verify(token)
            except ValueError as again:
                raise self._refused(again) from None
        except (google.auth.exceptions.TransportError, requests.RequestException):
            log.warning("could not fetch Google's certs", extra={"certs_url": self.certs_url})
            raise ApiError(
                503, "Google identity cannot be verified right now; try again shortly."
            ) from None

    def _verify(self, token: str) -> Mapping[str, Any]:
        request: transport.Request = self.http  # type: ignore[assignment]
        claims: Mapping[str, Any] = id_token.verify_token(
            token,
            request,
            audience=self.audience,
            certs_url=self.certs_url,
            clock_skew_in_seconds=CLOCK_SKEW_S,
        )
        return claims

    @staticmethod
    def _refused(exc: Exception) -> ApiError:
        # The reason goes to the log, the caller gets one message so a probe learns nothing
        # about which check failed. google-auth quotes the token after a colon in some
        # messages ("Wrong number of segments in token: …"), so only the text before it stays.
        reason = str(exc).split(",")[0].split(":")[0][:80]
        log.info("google id token refused", extra={"reason": reason})
        return _unauthorized("The Google ID token is not valid.")


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and len(token) < 8192


class Authenticator:
    """API key first; then a Google ID token when Google identity is configured."""

    def __init__(self, api_keys: Sequence[str], google: GoogleIdentity | None = None) -> None:
        self.api_keys = tuple(api_keys)
        self.google = google

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        """The authenticator ``settings`` describe (Google identity off without a client id)."""
        google = None
        if settings.google_client_id:
            if not settings.allowed_google_identities:
                log.warning("GOOGLE_CLIENT_ID is set but ALLOWED_GOOGLE_IDENTITIES is empty")
            google = GoogleIdentity(
                settings.google_client_id,
                settings.allowed_google_identities,
                settings.google_certs_url,
            )
        return cls(settings.api_keys, google)

    def identify(self, request: Request) -> str:
        """The caller's identity (``key:…`` or ``google:…``), or ApiError."""
        token = bearer_token(request)
        if token is None:
            raise ApiError(
                401,
                "Missing credentials: send 'Authorization: Bearer <API key or Google ID token>'.",
                headers={"WWW-Authenticate": _CHALLENGE},
            )
        if self.api_keys and key_matches(token, self.api_keys):
            return key_identity(token)
        if self.google is not None and _looks_like_jwt(token):
            return self.google.verify(token)
        raise _unauthorized("The API key is not valid.")
