"""The ceiling of plan throughput: a server that only parses the rows and echoes them back.

Same HTTP stack as the API (gunicorn, Flask, orjson, gunicorn.conf.py); no validation, no
decision, no rendering. `plan_throughput.py` serves it beside the API and sends it the same
bodies, so the two figures share a client, a machine and a moment.
Run: ``gunicorn 'benchmarks.echo_app:create_app()'`` from the project root.
"""

from __future__ import annotations

import orjson
from flask import Flask, Response, request


def create_app() -> Flask:
    app = Flask(__name__)

    @app.get("/healthz")
    def healthz() -> Response:
        return Response(b'{"status": "ok"}', mimetype="application/json")

    @app.post("/v1/plan")
    def echo() -> Response:
        rows = orjson.loads(request.get_data())["invoices"]
        return Response(orjson.dumps({"rows": rows}), mimetype="application/json")

    return app
