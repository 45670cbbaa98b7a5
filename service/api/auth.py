"""Authentication for every /v1 route: ``Authorization: Bearer`` with an API key (compared in
constant time) or, when GOOGLE_CLIENT_ID is set, a Google ID token from an allowed user
(``ScriptApp.getIdentityToken()`` in the add-on), checked for its signature against Google's
published certs (cached), issuer, audience, expiry, a verified email and the
ALLOWED_GOOGLE_IDENTITIES allow-list.

Either may be bound to scopes (``key:scope1|scope2`` in API_KEYS, likewise for identities): the
views call ``require_scope`` with the scope a request would touch, before touching it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import requests
from flask import Request, g
from google.auth import jwt
from werkzeug.http import parse_cache_control_header

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
# Re-fetch on an unknown key id at most this often: forged kids must not each cost a round trip.
REFETCH_AFTER_S = 60.0
_CHALLENGE = 'Bearer realm="invoice-collector"'


def _unauthorized(message: str) -> ApiError:
    return ApiError(
        401, message, headers={"WWW-Authenticate": f'{_CHALLENGE}, error="invalid_token"'}
    )


def fingerprint(kind: str, value: str) -> str:
    """``kind:`` and 12 hex digits of ``value``'s SHA-256: safe to log, unlike keys and scopes."""
    return f"{kind}:{hashlib.sha256(value.encode()).hexdigest()[:12]}"


def _fingerprints(scopes: Iterable[str]) -> list[str]:
    return sorted(fingerprint("scope", scope) for scope in scopes)


@dataclass(frozen=True)
class Caller:
    """Who is calling, and the scopes it may use."""

    identity: str  # ``key:<fingerprint>`` or ``google:<email>``: safe to log and to limit by
    scopes: frozenset[str] | None = None  # None: every scope


def require_scope(scope: str, *, refusal: str | None = None) -> None:
    """Refuse (403) the current request unless its caller may use ``scope``, naming ``scope``
    unless a ``refusal`` is given (for a scope the caller did not choose: the server's sheet)."""
    caller = g.get("caller")
    if not isinstance(caller, Caller):  # every /v1 request is identified first: fail closed
        raise _unauthorized("The request carries no verified credentials.")
    if caller.scopes is None or scope in caller.scopes:
        return
    fingerprints = {"scope": fingerprint("scope", scope), "bound_to": _fingerprints(caller.scopes)}
    log.info("scope refused", extra={"caller": caller.identity, **fingerprints})
    who = "This Google account" if caller.identity.startswith("google:") else "This API key"
    if refusal is None:
        message, details = f"{who} may not use the scope {scope!r}.", {"scope": scope}
    else:
        # Another client's sheet id (or the server's file path) is not told to this caller.
        message, details = f"{who} {refusal}", None
    raise ApiError(403, message, code="scope_forbidden", details=details)


class GoogleIdentity:
    """Verifies Google ID tokens for one client id against an allow-list."""

    def __init__(
        self,
        client_id: str,
        allowed: Sequence[str],
        certs_url: str,
        clock: Callable[[], float] = time.monotonic,
        *,
        scopes: Mapping[str, frozenset[str]] | None = None,
    ) -> None:
        # GOOGLE_CLIENT_ID may list several ids (say, the add-on's and a test deployment's).
        self.audience = [part.strip() for part in client_id.split(",") if part.strip()]
        self.allowed = tuple(entry.lower() for entry in allowed)
        # Entries (addresses, @domains) bound to scopes; the others may use every scope.
        self.scopes = {entry.lower(): frozenset(s) for entry, s in (scopes or {}).items()}
        self.certs_url = certs_url
        self._clock = clock
        self._session = requests.Session()
        # (fetched at, expires at, {key id: PEM}); replaced whole, so threads need no lock.
        self._certs: tuple[float, float, Mapping[str, str]] | None = None

    def verify(self, token: str) -> Caller:
        """The caller (``google:<email>`` and its scopes), or ApiError 401/403/503."""
        claims = self._claims(token)
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise _unauthorized("The Google ID token was not issued by Google.")
        email = claims.get("email")
        if not isinstance(email, str) or claims.get("email_verified") is not True:
            raise _unauthorized("The Google ID token carries no verified email.")
        email, domain = email.lower(), "@" + email.rpartition("@")[2].lower()
        # The address's own entry wins over its domain's: one person may be bound more narrowly.
        entry = next((e for e in (email, domain) if e in self.allowed), None)
        if entry is None:
            log.info("google identity refused", extra={"domain": domain[1:]})
            raise ApiError(403, "This Google account is not allowed to use this service.")
        return Caller("google:" + email, self.scopes.get(entry))

    def _claims(self, token: str) -> Mapping[str, Any]:
        try:
            try:
                return self._decode(token, refetch=False)
            except ValueError as exc:
                # An unknown key id usually means Google rotated its keys: fetch them once more.
                fetched_at = self._certs[0] if self._certs else self._clock()
                if "key id" not in str(exc) or self._clock() - fetched_at < REFETCH_AFTER_S:
                    raise
                return self._decode(token, refetch=True)
        except requests.RequestException:  # before ValueError: a bad JSON body is both
            log.warning("could not fetch Google's certs", extra={"certs_url": self.certs_url})
            raise ApiError(
                503, "Google identity cannot be verified right now; try again shortly."
            ) from None
        except ValueError as exc:
            # One message, so a probe learns not which check failed; the log gets the reason up
            # to its first colon, after which google-auth may quote the token ("…in token: …").
            reason = str(exc).split(",")[0].split(":")[0][:80]
            log.info("google id token refused", extra={"reason": reason})
            raise _unauthorized("The Google ID token is not valid.") from None

    def _decode(self, token: str, refetch: bool) -> Mapping[str, Any]:
        now = self._clock()
        if refetch or self._certs is None or self._certs[1] <= now:
            # google-auth's id_token.verify_token would fetch the certs on every call.
            response = self._session.get(self.certs_url, timeout=CERTS_TIMEOUT_S)
            response.raise_for_status()
            max_age = parse_cache_control_header(response.headers.get("Cache-Control")).max_age
            ttl = DEFAULT_CERTS_TTL_S if max_age is None else min(max_age, MAX_CERTS_TTL_S)
            self._certs = (now, now + ttl, response.json())
        claims: Mapping[str, Any] = jwt.decode(  # type: ignore[no-untyped-call]
            token,
            certs=self._certs[2],
            audience=self.audience,
            clock_skew_in_seconds=CLOCK_SKEW_S,
        )
        return claims


class Authenticator:
    """API key first; then a Google ID token when Google identity is configured."""

    def __init__(self, settings: Settings) -> None:
        self.api_keys = tuple(key.encode() for key in settings.api_keys)
        # Looked up by the token only after it has matched a key in constant time.
        self._key_scopes = {key.encode(): s for key, s in settings.api_key_scopes.items()}
        self.google: GoogleIdentity | None = None
        if settings.google_client_id:
            if not settings.allowed_google_identities:
                log.warning("GOOGLE_CLIENT_ID is set but ALLOWED_GOOGLE_IDENTITIES is empty")
            self.google = GoogleIdentity(
                settings.google_client_id,
                settings.allowed_google_identities,
                settings.google_certs_url,
                scopes=settings.google_identity_scopes,
            )
        bindings = {
            **{fingerprint("key", k): s for k, s in settings.api_key_scopes.items()},
            **settings.google_identity_scopes,
        }
        if bindings:
            # Fingerprints only, as for keys: a sheet id, with its link shared, opens the sheet.
            log.info(
                "scope bindings",
                extra={"bindings": {who: _fingerprints(s) for who, s in bindings.items()}},
            )

    def identify(self, request: Request) -> Caller:
        """The caller (``key:…`` or ``google:…``, with its scopes), or ApiError."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(
                401,
                "Missing credentials: send 'Authorization: Bearer <API key or Google ID token>'.",
                headers={"WWW-Authenticate": _CHALLENGE},
            )
        supplied = token.encode()
        # Compared against every key, always, so the time taken says nothing about which.
        if sum(hmac.compare_digest(supplied, key) for key in self.api_keys):
            return Caller(fingerprint("key", token), self._key_scopes.get(supplied))
        if self.google is not None and token.count(".") == 2 and len(token) < 8192:
            return self.google.verify(token)
        raise _unauthorized("The API key is not valid.")
