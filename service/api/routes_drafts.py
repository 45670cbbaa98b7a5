"""POST /v1/drafts: plan, create each due draft exactly once, return write-back values."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, g, request
from flask.views import MethodView

from service.api.app_context import services
from service.api.errors import ApiError
from service.api.jsonio import Blueprint, json_response
from service.api.routes_plan import plan_request, planned_envelope
from service.api.schemas import DraftsRequestSchema, ErrorResponseSchema, PlanResponseSchema
from service.generate import generate_drafts
from service.ports import AuthorizationError
from service.results import outcome_row_dict, planned_row_dict

blp = Blueprint("drafts", __name__, url_prefix="/v1", description="Create drafts")


def _request_key() -> str | None:
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key:
        return None
    if len(key) > 200 or not key.isprintable():
        raise ApiError(400, "Idempotency-Key must be printable and at most 200 characters.")
    # Scoped to the caller, so two clients choosing the same key never see each other's work.
    return f"{g.identity}:{key}"


@blp.route("/drafts")
class Drafts(MethodView):
    @blp.arguments(DraftsRequestSchema)
    @blp.response(200, PlanResponseSchema)
    @blp.alt_response(401, schema=ErrorResponseSchema)
    @blp.alt_response(413, schema=ErrorResponseSchema)
    @blp.alt_response(422, schema=ErrorResponseSchema)
    @blp.doc(
        security=[{"bearerAuth": [], "googleAccessToken": []}],
        parameters=[{"in": "header", "name": "Idempotency-Key", "schema": {"type": "string"}}],
    )
    def post(self, args: dict[str, Any]) -> Response:
        """Create a Gmail (or Maildir) draft for every due invoice, at most once per stage."""
        svc = services(current_app)
        locale = svc.settings.locale
        request_key = _request_key()
        ctx, planned = plan_request(args, svc)
        if args["dry_run"]:
            rows = [planned_row_dict(p, locale=locale) for p in planned]
            return json_response({**planned_envelope(ctx, planned, rows, locale), "dry_run": True})
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
        body = planned_envelope(ctx, planned, rows, locale)
        body["summary"]["drafted"] = result.drafted
        body["dry_run"] = False
        body["stopped"] = result.stopped
        return json_response(body)
