"""POST /v1/plan: decisions and rendered previews, no side effects."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Response, current_app, g, request
from flask.views import MethodView

from service.api.app_context import services
from service.api.errors import ApiError
from service.api.jsonio import READ_AHEAD, Blueprint, with_rows
from service.api.schemas import ErrorResponseSchema, PlanRequestSchema, PlanResponseSchema
from service.bootstrap import Services
from service.domain.dates import today_in
from service.planning import PlannedRow, plan
from service.results import overdue_totals, summarize

blp = Blueprint("plan", __name__, url_prefix="/v1", description="Plan reminders")


@dataclass(frozen=True)
class RequestContext:
    """The resolved date, timezone and scope of a plan or drafts request."""

    today: dt.date
    timezone: str
    scope: str


def resolve(args: Mapping[str, Any], svc: Services) -> RequestContext:
    """Fill in today/timezone/scope from the request or the configuration, and cap the rows."""
    rows = args["invoices"]
    limit = svc.settings.max_rows_per_request
    if len(rows) > limit:
        raise ApiError(
            413,
            f"{len(rows)} rows in one request; the limit is {limit}. Send them in chunks.",
            details={"rows": len(rows), "limit": limit},
        )
    timezone = args.get("timezone") or svc.settings.timezone
    today = args.get("today") or today_in(timezone, svc.clock())
    scope = args.get("scope") or "default"
    return RequestContext(today=today, timezone=timezone, scope=scope)


def plan_request(args: dict[str, Any], svc: Services) -> tuple[RequestContext, list[PlannedRow]]:
    """Run plan() for a validated request body, which gives up its rows to it.

    Nothing after plan() needs the raw rows, and at 100k rows they are a quarter of the
    request's peak memory: taking them out of ``args`` lets them go as soon as plan() is done.
    """
    ctx = resolve(args, svc)
    planned = plan(
        args.pop("invoices"), today=ctx.today, settings=svc.plan_settings, templates=svc.templates
    )
    return ctx, planned


def envelope_head(
    ctx: RequestContext, summary: dict[str, Any], totals: list[dict[str, Any]]
) -> dict[str, Any]:
    """The response body shared by /v1/plan and /v1/drafts, but for its rows (they come last)."""
    return {
        "today": ctx.today.isoformat(),
        "timezone": ctx.timezone,
        "scope": ctx.scope,
        "summary": summary,
        "totals": totals,
    }


def planned_envelope(
    ctx: RequestContext, planned: list[PlannedRow], rows: list[dict[str, Any]], locale: str
) -> dict[str, Any]:
    """The response body for rows planned in this process."""
    return {**envelope_head(ctx, summarize(rows), overdue_totals(planned, locale)), "rows": rows}


@blp.before_request
def read_sheet() -> None:
    """A large sheet is planned on helper processes: ready them before its body is read, then
    have each read a part of the body (and keep its rows) while this process reads the head."""
    planner = services(current_app).sheet_planner
    planner.expect(request.content_length or 0)
    if request.method == "POST" and request.is_json:
        body = request.get_data(cache=False)
        g.setdefault(READ_AHEAD, planner.read(body) or body)


@blp.teardown_request
def forget_sheet(_: BaseException | None) -> None:
    """Rows a helper kept for a plan that never came (a refused request) are let go."""
    document = g.get(READ_AHEAD)
    if isinstance(document, dict):
        services(current_app).sheet_planner.forget(document.get("invoices"))


@blp.route("/plan")
class Plan(MethodView):
    @blp.arguments(PlanRequestSchema)
    @blp.response(200, PlanResponseSchema)
    @blp.alt_response(401, schema=ErrorResponseSchema)
    @blp.alt_response(413, schema=ErrorResponseSchema)
    @blp.alt_response(422, schema=ErrorResponseSchema)
    def post(self, args: dict[str, Any]) -> Response:
        """Decide each invoice's stage and render its reminder; creates nothing."""
        svc = services(current_app)
        ctx = resolve(args, svc)
        # The request gives up its rows: they go as soon as the plan is written.
        report = svc.sheet_planner.report(args.pop("invoices"), today=ctx.today)
        head = envelope_head(ctx, report.summary, report.totals)
        return Response(with_rows(head, report.rows), mimetype="application/json")
