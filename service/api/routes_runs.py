"""POST /v1/runs starts a headless run over the configured sheet; GET /v1/runs/{id} reports it.

The run works in a background thread of the worker that accepted it; its state lives in the
ledger database (SqlRuns), so any instance behind the load balancer can answer the GET.
"""

from __future__ import annotations

import threading
from dataclasses import asdict
from functools import partial
from typing import Any

from flask import url_for
from flask.views import MethodView

from service.adapters.runs_sql import RunInProgress
from service.api import services
from service.api.auth import require_scope
from service.api.blueprint import Blueprint
from service.api.errors import ApiError
from service.api.schemas import ErrorResponseSchema, RunAcceptedSchema, RunRequestSchema, RunSchema
from service.config import ConfigError
from service.ports import AuthorizationError
from service.usecases.run import RunStatus, record_run, run_timezone

blp = Blueprint("runs", __name__, url_prefix="/v1", description="Headless runs")


@blp.route("/runs")
class Runs(MethodView):
    @blp.arguments(RunRequestSchema, required=False)
    @blp.response(202, RunAcceptedSchema)
    @blp.alt_response(401, schema=ErrorResponseSchema)
    @blp.alt_response(403, schema=ErrorResponseSchema)
    @blp.alt_response(409, schema=ErrorResponseSchema)
    @blp.alt_response(503, schema=ErrorResponseSchema)
    def post(self, args: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Start a run over the configured sheet (Google Sheet or INVOICES_FILE); 202 + id."""
        svc = services()
        dry_run = svc.settings.dry_run if args.get("dry_run") is None else args["dry_run"]
        try:
            source = svc.source()
            # CsvFileSource names its scope; SheetsSource is scoped by its spreadsheet id.
            scope = getattr(source, "scope", None) or getattr(source, "spreadsheet_id", "unknown")
            # Before the run is recorded, the sheet read or a mailbox opened.
            require_scope(str(scope), refusal="may not run the server's sheet.")
            # The window is in the sheet's own zone unless TIMEZONE says otherwise.
            zone = run_timezone(source, svc.run_settings)[0]
            window = svc.run_settings.window
            if not args.get("force") and not window.contains(svc.clock(), zone):
                raise ApiError(
                    409,
                    f"Outside the run window ({window.start:02d}:00–{window.end:02d}:00 "
                    f"{zone}); send force: true to run anyway.",
                    code=RunStatus.OUTSIDE_WINDOW.value,
                    details={"window_start": window.start, "window_end": window.end},
                )
            # Made now, so missing mailbox credentials are a 401 here, not a failed run later.
            sink = None if dry_run else svc.sink_for(None)
            run = svc.runs.create_run(str(scope), now=svc.clock())
        except AuthorizationError as exc:
            raise ApiError(401, str(exc), code=exc.code) from None
        except ConfigError as exc:
            raise ApiError(503, str(exc), code="not_configured") from None
        except RunInProgress as exc:
            raise ApiError(
                409, f"{exc}: wait for it.", code="run_in_progress", details={"id": exc.run.id}
            ) from None
        except Exception as exc:
            from service.adapters.sheets import SheetsError

            if not isinstance(exc, SheetsError):
                raise
            # A sheet that cannot tell its zone (not shared, Google down) is a 503 now.
            raise ApiError(503, str(exc), code="sheet_unavailable") from None
        # The window was checked above: the run itself is forced.
        execute = partial(
            svc.run, source, today=args.get("today"), dry_run=dry_run, force=True, sink=sink
        )
        threading.Thread(
            target=record_run,
            args=(svc.runs, run.id, execute),
            # Touched four times a lease, so only a dead worker's run is ever taken for one.
            kwargs={"clock": svc.clock, "heartbeat_s": svc.settings.run_lease_seconds / 4},
            name=f"run-{run.id}",
            daemon=True,  # a shutting-down worker must not hang on a run
        ).start()
        status_url = url_for("runs.RunById", run_id=run.id)
        body = {"id": run.id, "state": run.state.value, "status_url": status_url}
        return body, 202, {"Location": status_url}


@blp.route("/runs/<run_id>")
class RunById(MethodView):
    @blp.response(200, RunSchema)
    @blp.alt_response(401, schema=ErrorResponseSchema)
    @blp.alt_response(403, schema=ErrorResponseSchema)
    @blp.alt_response(404, schema=ErrorResponseSchema)
    def get(self, run_id: str) -> dict[str, Any]:
        """A run's state, progress, summary and per-row results (never email bodies)."""
        run = services().runs.get_run(run_id)
        if run is None:
            raise ApiError(404, f"No run {run_id!r}.", code="run_not_found")
        require_scope(run.scope, refusal="may not read this run: it is of another sheet.")
        return {**asdict(run), "progress": {"done": run.done, "total": run.total}}
