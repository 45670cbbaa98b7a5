"""Fast JSON for Flask: orjson parses and writes 100k-row payloads several times faster."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import flask
import orjson
from flask import Response
from flask.json.provider import JSONProvider
from flask_smorest import Blueprint as SmorestBlueprint
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request


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
        return orjson.loads(s)


def json_response(payload: Any, status: int = 200) -> Response:
    """A JSON response built without a second pass through marshmallow."""
    return Response(
        orjson.dumps(payload, default=_default, option=orjson.OPT_NON_STR_KEYS),
        status=status,
        mimetype="application/json",
    )


class OrjsonParser(FlaskParser):
    """webargs' Flask parser reading request bodies with orjson instead of the json module."""

    def _raw_load_json(self, req: flask.Request) -> Any:
        if not is_json_request(req):
            return core.missing
        data = req.get_data(cache=True)
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            # orjson refuses a few things the json module reads (integers beyond 64 bits, NaN):
            # let the json module decide, so such a cell is one row's error, not the request's.
            return core.parse_json(data)


class Blueprint(SmorestBlueprint):  # type: ignore[misc]
    """flask-smorest's Blueprint with the orjson request parser."""

    ARGUMENTS_PARSER = OrjsonParser()
