"""POST /v1/plan: decisions and rendered previews, no side effects."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flask.views import MethodView

from service.api import services
from service.api.auth import require_scope
from service.api.blueprint import Blueprint
from service.api.errors import ApiError
from service.api.schemas import ErrorResponseSchema, PlanRequestSchema, PlanResponseSchema
from service.bootstrap import Services
from service.domain.dates import today_in
from service.usecases.plan import PlannedRow, plan
from service.usecases.report import aging_report, overdue_totals, planned_row_dict, summarize

blp = Blueprint("plan", __name__, url_prefix="/v1", description="Plan reminders")


@dataclass(frozen=True)
class RequestContext:
    """The resolved date, timezone and scope of a plan or drafts request."""

    today: dt.date
    timezone: str
    scope: str


def resolve(
    args: Mapping[str, Any], svc: Services, *, render: bool = True
) -> tuple[RequestContext, list[PlannedRow]]:
    """The request's context (from it or the configuration) and its rows planned. A caller
    bound to other scopes is refused (403) before anything is read or claimed; a bound caller
    must name its scope, since the default one is shared by every unnamed call."""
    scope = args.get("scope") or "default"
    unnamed = "is bound to particular sheets: send `scope`, the id of one of them."
    require_scope(scope, refusal=None if args.get("scope") else unnamed)
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
    planned = plan(
        rows, today=today, settings=svc.plan_settings, templates=svc.templates, render=render
    )
    return RequestContext(today=today, timezone=timezone, scope=scope), planned


def envelope(
    ctx: RequestContext, planned: Sequence[PlannedRow], rows: list[dict[str, Any]], locale: str
) -> dict[str, Any]:
    """The response body shared by /v1/plan and /v1/drafts."""
    return {
        "today": ctx.today,
        "timezone": ctx.timezone,
        "scope": ctx.scope,
        "summary": summarize(rows),
        "totals": overdue_totals(planned, locale),
        "rows": rows,
    }


@blp.route("/plan")
class Plan(MethodView):
    @blp.arguments(PlanRequestSchema)
    @blp.response(200, PlanResponseSchema)
    @blp.alt_response(401, schema=ErrorResponseSchema)
    @blp.alt_response(403, schema=ErrorResponseSchema)
    @blp.alt_response(413, schema=ErrorResponseSchema)
    def post(self, args: dict[str, Any]) -> dict[str, Any]:
        """Decide each invoice's stage and render its reminder; creates nothing."""
        svc = services()
        ctx, planned = resolve(args, svc)
        locale = svc.settings.locale
        rows = [planned_row_dict(p, locale=locale) for p in planned]
        return {
            **envelope(ctx, planned, rows, locale),
            "aging": aging_report(planned, ctx.today, locale),
        }
