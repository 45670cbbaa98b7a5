"""One JSON error shape for every failure: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)

# HTTP status -> our stable error code
_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(Exception):
    """A request-level failure raised by a view; rendered by the one handler."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _CODES.get(status, "error")
        self.message = message
        self.details = details
        self.headers = headers or {}


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Build the error JSON response."""
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    response = jsonify({"error": body})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def http_exception_response(exc: HTTPException) -> Response:
    """Turn a werkzeug/flask-smorest HTTPException into our shape."""
    status = exc.code or 500
    details = None
    data = getattr(exc, "data", None)  # flask-smorest puts marshmallow messages here
    if isinstance(data, dict):
        details = data.get("messages") or data.get("errors")
    message = exc.description or exc.name
    if status == 422 and details:
        message = "The request body is not valid; see details."
    elif status == 400 and details == {"json": ["Invalid JSON body."]}:
        message = "The request body is not valid JSON."
    headers = dict(getattr(exc, "headers", None) or {})
    return error_response(status, _CODES.get(status, "error"), str(message), details, headers)


def register_error_handlers(app: Flask) -> None:
    """Every error leaves as JSON — never an HTML page, never a traceback."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        return http_exception_response(exc)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error", extra={"error_type": type(exc).__name__})
        return http_exception_response(InternalServerError("Something went wrong on our side."))
