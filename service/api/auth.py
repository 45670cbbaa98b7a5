"""API-key authentication for every /v1 route (constant-time comparison)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from flask import Request

from service.api.errors import ApiError


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


def require_api_key(request: Request, keys: Sequence[str]) -> str:
    """Return the caller's identity (the key's short fingerprint) or raise 401."""
    token = bearer_token(request)
    if token is None:
        raise ApiError(
            401,
            "Missing API key: send 'Authorization: Bearer <API key>'.",
            headers={"WWW-Authenticate": 'Bearer realm="invoice-collector"'},
        )
    if not keys or not key_matches(token, keys):
        raise ApiError(
            401,
            "The API key is not valid.",
            headers={"WWW-Authenticate": 'Bearer realm="invoice-collector", error="invalid_token"'},
        )
    # A fingerprint, not the key: safe to log and to rate-limit by.
    return "key:" + hashlib.sha256(token.encode()).hexdigest()[:12]
