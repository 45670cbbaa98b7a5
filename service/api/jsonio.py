"""Fast JSON in and out for Flask: orjson reads and writes 100k-row payloads.

Reading is exactly what the json module would read: where orjson would read a value
differently (an integer beyond 64 bits) or refuses a body the json module accepts, the json
module reads it.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import flask_smorest
import orjson
from flask import Request, Response, g
from flask.json.provider import JSONProvider
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request

from service.json_split import orjson_reads_exactly

# Where a before_request that has read the body leaves it, or its document (a large sheet,
# read in parts by service/api/plan_report.py), for the view's arguments: the request then
# keeps no copy of its own, megabytes that would stay until the response is sent.
READ_AHEAD = "json_read_ahead"


def loads(data: bytes | str) -> Any:
    """A JSON document as the json module reads it (as webargs would), read by orjson."""
    raw = data.encode() if isinstance(data, str) else data
    if orjson_reads_exactly(raw):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # NaN, a lone surrogate or a real error: the json module's reading, or error
    return core.parse_json(raw)


class JsonParser(FlaskParser):
    """webargs' Flask parser, reading bodies with loads()."""

    def _raw_load_json(self, req: Request) -> Any:
        if not is_json_request(req):
            return core.missing
        ahead = g.get(READ_AHEAD)
        if ahead is None:
            return loads(req.get_data(cache=True))
        return loads(ahead) if isinstance(ahead, bytes) else ahead


class Blueprint(flask_smorest.Blueprint):  # type: ignore[misc]  # flask-smorest is untyped
    """flask-smorest's Blueprint with the fast, exact JSON body parser."""

    ARGUMENTS_PARSER = JsonParser()


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class OrjsonProvider(JSONProvider):
    """Flask JSON provider backed by orjson."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return dump_bytes(obj).decode()

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads(s)


def dump_bytes(payload: Any) -> bytes:
    """JSON as the API writes it: Decimals and dates as strings."""
    return orjson.dumps(payload, default=_default, option=orjson.OPT_NON_STR_KEYS)


def with_rows(head: dict[str, Any], arrays: list[bytes]) -> bytes:
    """``head`` as a JSON object with one more member, ``"rows"``: the items of ``arrays``
    (JSON arrays), in order, as one array. Written in one copy: a 100k-row plan's rows are
    tens of megabytes."""
    pieces: list[bytes | memoryview] = [
        dump_bytes(head)[:-1],
        b',"rows":[' if head else b'"rows":[',
    ]
    for array in arrays:
        if array != b"[]":
            pieces += [memoryview(array)[1:-1], b","]
    if pieces[-1] == b",":
        pieces.pop()
    pieces.append(b"]}")
    return b"".join(pieces)


def json_response(payload: Any, status: int = 200) -> Response:
    """A JSON response built without a second pass through marshmallow."""
    return Response(dump_bytes(payload), status=status, mimetype="application/json")
