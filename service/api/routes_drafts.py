"""POST /v1/drafts: plan, create each due draft exactly once, return write-back values."""

from __future__ import annotations

from typing import Any

from flask import g, request
from flask.views import MethodView

from service.api import services
from service.api.blueprint import Blueprint
from service.api.errors import ApiError
from service.api.routes_plan import envelope, resolve
from service.api.schemas import DraftsRequestSchema, ErrorResponseSchema, PlanResponseSchema
from service.ports import AuthorizationError
from service.usecases.drafts import generate_drafts
from service.usecases.report import outcome_row_dict, planned_row_dict

blp = Blueprint("drafts", __name__, url_prefix="/v1", description="Create drafts")


def _request_key() -> str | None:
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key:
        return None
    if len(key) > 200 or not key.isprintable():
        raise ApiError(400, "Idempotency-Key must be printable and at most 200 characters.")
    # Scoped to the caller, so two clients choosing the same key never see each other's work.
    return f"{g.caller.identity}:{key}"


@blp.route("/drafts")
class Drafts(MethodView):
    @blp.arguments(DraftsRequestSchema)
    @blp.response(200, PlanResponseSchema)
    @blp.alt_response(401, schema=ErrorResponseSchema)
    @blp.alt_response(403, schema=ErrorResponseSchema)
    @blp.alt_response(413, schema=ErrorResponseSchema)
    @blp.doc(
        security=[{"bearerAuth": [], "googleAccessToken": []}],
        parameters=[{"in": "header", "name": "Idempotency-Key", "schema": {"type": "string"}}],
    )
    def post(self, args: dict[str, Any]) -> dict[str, Any]:
        """Create a Gmail (or Maildir) draft for every due invoice, at most once per stage.

        A call stops starting drafts after DRAFTS_TIME_BUDGET_SECONDS; `remaining` counts the
        rows it left, to be sent again.
        """
        svc = services()
        locale = svc.settings.locale
        request_key = _request_key()
        # A dry run previews each email; a real one renders it as it drafts it.
        ctx, planned = resolve(args, svc, render=args["dry_run"])
        if args["dry_run"]:
            rows = [planned_row_dict(p, locale=locale) for p in planned]
            return {**envelope(ctx, planned, rows, locale), "dry_run": True, "remaining": 0}
        try:
            sink = svc.sink_for(request.headers.get("X-Google-Access-Token") or None)
        except AuthorizationError as exc:
            raise ApiError(401, str(exc), code=exc.code) from None
        result = generate_drafts(
            planned,
            scope=ctx.scope,
            today=ctx.today,
            ledger=svc.ledger,
            sink=sink,
            settings=svc.draft_settings,
            templates=svc.templates,
            clock=svc.clock,
            request_key=request_key,
            on_created=svc.after_draft,
            payment_links=svc.payment_links,
        )
        rows = [outcome_row_dict(o, locale=locale) for o in result.outcomes]
        body = envelope(ctx, planned, rows, locale)
        body["summary"]["drafted"] = result.drafted
        return {**body, "dry_run": False, "stopped": result.stopped, "remaining": result.remaining}
