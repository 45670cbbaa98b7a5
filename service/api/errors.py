"""One JSON error shape for every failure: {"error": {"code", "message", "details"}}.

flask-smorest's own handler receives every HTTPException (``abort``, a refused body, a 404, a
429, an unexpected error turned into a 500); ``Api.handle_http_exception`` only shapes it."""

from __future__ import annotations

from typing import Any

import flask_smorest
from werkzeug.exceptions import HTTPException

from service.api.schemas import ErrorResponseSchema

# HTTP status -> our stable error code, when the raiser names none.
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


class ApiError(HTTPException):
    """A request-level failure raised by a view, with our own error code."""

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
        self.code = status
        self.data = {"message": message, "error_code": code, "errors": details, "headers": headers}


class Api(flask_smorest.Api):  # type: ignore[misc]  # flask-smorest is untyped
    """flask-smorest's Api, writing and documenting errors in DESIGN §8's shape."""

    ERROR_SCHEMA = ErrorResponseSchema

    def handle_http_exception(self, error: HTTPException) -> tuple[dict[str, Any], int, Any]:
        status = error.code or 500
        data: dict[str, Any] = getattr(error, "data", None) or {}
        details = data.get("errors") or data.get("messages")
        message = data.get("message") or error.description or error.name
        if status == 422 and details and "message" not in data:
            message = "The request body is not valid; see details."
        elif details == {"json": ["Invalid JSON body."]}:
            message = "The request body is not valid JSON."
        if status == 500:
            message = "Something went wrong on our side."  # never a traceback or its text
        body: dict[str, Any] = {
            "code": data.get("error_code") or _CODES.get(status, "error"),
            "message": str(message),
        }
        if details is not None:
            body["details"] = details
        headers = dict(data.get("headers") or {})
        if error.response is None:  # e.g. Flask-Limiter's 429 sets Retry-After itself
            headers.update((k, v) for k, v in error.get_headers() if k.lower() != "content-type")
        return {"error": body}, status, headers
