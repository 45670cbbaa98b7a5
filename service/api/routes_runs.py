"""POST /v1/runs starts a headless run over the configured sheet; GET /v1/runs/{id} reports it.

The run works in a background thread of the worker that accepted it; its state lives in the
ledger database (SqlRuns), so any instance behind the load balancer can answer the GET.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from flask import url_for
from flask.views import MethodView

from service.api import services
from service.api.blueprint import Blueprint
from service.api.errors import ApiError
from service.api.schemas import ErrorResponseSchema
from service.api.schemas_runs import RunAcceptedSchema, RunRequestSchema, RunSchema
from service.bootstrap import Services
from service.config import ConfigError
from service.ports import AuthorizationError, DraftSink, InvoiceSource, Run
from service.usecases.run import Progress, RunReport, RunStatus, record_run, run_sheet

blp = Blueprint("runs", __name__, url_prefix="/v1", description="Headless runs")


def _scope(source: InvoiceSource) -> str:
    # CsvFileSource names its scope; SheetsSource is scoped by its spreadsheet id.
    return str(getattr(source, "scope", None) or getattr(source, "spreadsheet_id", "unknown"))


def run_body(run: Run) -> dict[str, Any]:
    """A stored run as GET /v1/runs/{id} returns it."""
    return {
        "id": run.id,
        "scope": run.scope,
        "state": run.state.value,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "progress": {"done": run.done, "total": run.total},
        "summary": dict(run.summary),
        "results": list(run.results),
        "error": run.error,
    }


def _execute(
    svc: Services, source: InvoiceSource, sink: DraftSink | None, args: dict[str, Any]
) -> Callable[[Progress], RunReport]:
    def execute(progress: Progress) -> RunReport:
        return run_sheet(
            source,
            ledger=svc.ledger,
            sink=(lambda: sink) if sink is not None else (lambda: svc.sink_for(None)),
            templates=svc.templates,
            settings=svc.run_settings,
            clock=svc.clock,
            today=args["today"],
            dry_run=args["dry_run"],
            force=True,  # the window was checked when the run was accepted
            notifier=svc.notifier(),
            on_progress=progress,
            on_created=svc.after_draft,
            payment_links=svc.payment_links,
        )

    return execute


@blp.route("/runs")
class Runs(MethodView):
    @blp.arguments(RunRequestSchema, required=False)
    @blp.response(202, RunAcceptedSchema)
    @blp.alt_response(401, schema=ErrorResponseSchema)
    @blp.alt_response(409, schema=ErrorResponseSchema)
    @blp.alt_response(422, schema=ErrorResponseSchema)
    @blp.alt_response(503, schema=ErrorResponseSchema)
    def post(self, args: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Start a run over the configured sheet (Google Sheet or INVOICES_FILE); 202 + id."""
        svc = services()
        settings = svc.settings
        args = {
            "today": args.get("today"),
            "dry_run": settings.dry_run if args.get("dry_run") is None else args["dry_run"],
            "force": bool(args.get("force")),
        }
        window = svc.run_settings.window
        if not args["force"] and not window.contains(svc.clock()):
            raise ApiError(
                409,
                f"Outside the run window ({window.start:02d}:00–{window.end:02d}:00 "
                f"{window.timezone}); send force: true to run anyway.",
                code=RunStatus.OUTSIDE_WINDOW.value,
                details={"window_start": window.start, "window_end": window.end},
            )
        try:
            source = svc.source()
            # Made now, so missing mailbox credentials are a 401 here, not a failed run later.
            sink = None if args["dry_run"] else svc.sink_for(None)
        except AuthorizationError as exc:
            raise ApiError(401, str(exc), code=exc.code) from None
        except ConfigError as exc:
            raise ApiError(503, str(exc), code="not_configured") from None
        run = svc.runs.create_run(_scope(source), now=svc.clock())
        thread = threading.Thread(
            target=record_run,
            args=(svc.runs, run.id, _execute(svc, source, sink, args)),
            kwargs={"clock": svc.clock},
            name=f"run-{run.id}",
        )
        thread.daemon = True  # a shutting-down worker must not hang on a run
        thread.start()
        status_url = url_for("runs.RunById", run_id=run.id)
        body = {"id": run.id, "state": run.state.value, "status_url": status_url}
        return body, 202, {"Location": status_url}


@blp.route("/runs/<run_id>")
class RunById(MethodView):
    @blp.response(200, RunSchema)
    @blp.alt_response(401, schema=ErrorResponseSchema)
    @blp.alt_response(404, schema=ErrorResponseSchema)
    def get(self, run_id: str) -> dict[str, Any]:
        """A run's state, progress, summary and per-row results (never email bodies)."""
        run = services().runs.get_run(run_id)
        if run is None:
            raise ApiError(404, f"No run {run_id!r}.", code="run_not_found")
        return run_body(run)
