"""flask-smorest's Blueprint, with a JSON body reader that refuses what cannot be read."""

from __future__ import annotations

from typing import Any

import flask
import flask_smorest
from webargs.flaskparser import FlaskParser, abort


class _Parser(FlaskParser):
    def _raw_load_json(self, req: flask.Request) -> Any:
        try:
            return super()._raw_load_json(req)
        except RecursionError:
            # json.loads recurses once per level: 100,000 "[" exhaust the stack, which is a
            # malformed request, not a server error.
            abort(400, messages={"json": ["The JSON body is nested too deeply."]})


class Blueprint(flask_smorest.Blueprint):  # type: ignore[misc]  # flask-smorest is untyped
    """Every blueprint of the API."""

    ARGUMENTS_PARSER = _Parser()
