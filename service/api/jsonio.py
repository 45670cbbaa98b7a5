"""Fast JSON out for Flask: orjson writes 100k-row payloads several times faster.

Request bodies are read by the json module (through webargs), which keeps every number exact.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import orjson
from flask import Response
from flask.json.provider import JSONProvider


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class OrjsonProvider(JSONProvider):
    """Flask JSON provider backed by orjson."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return orjson.dumps(obj, default=_default, option=orjson.OPT_NON_STR_KEYS).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        # The json module, not orjson: orjson reads an integer beyond 64 bits as a float,
        # silently changing its digits, and request bodies carry money and ids.
        return json.loads(s)


def json_response(payload: Any, status: int = 200) -> Response:
    """A JSON response built without a second pass through marshmallow."""
    return Response(
        orjson.dumps(payload, default=_default, option=orjson.OPT_NON_STR_KEYS),
        status=status,
        mimetype="application/json",
    )
