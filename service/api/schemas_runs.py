"""Payloads of /v1/runs: the request that starts a headless run and the run it reports."""

from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

from service.api.schemas import RowResultSchema

_STATES = ("queued", "running", "done", "failed")


class RunRequestSchema(Schema):
    class Meta:
        unknown = RAISE

    today = fields.Date(
        load_default=None,
        metadata={"description": "The spreadsheet's date; default: today in TIMEZONE."},
    )
    dry_run = fields.Boolean(
        load_default=None,
        metadata={"description": "Plan only, create nothing; default: DRY_RUN (true unless set)."},
    )
    force = fields.Boolean(
        load_default=False,
        metadata={"description": "Run even outside WINDOW_START–WINDOW_END."},
    )


class RunAcceptedSchema(Schema):
    id = fields.String(required=True, metadata={"description": "Poll GET /v1/runs/{id}."})
    state = fields.String(required=True, validate=validate.OneOf(_STATES))
    status_url = fields.String(required=True)


class ProgressSchema(Schema):
    done = fields.Integer(required=True, metadata={"description": "Drafts attempted so far."})
    total = fields.Integer(required=True, metadata={"description": "Drafts due in this run."})


class RunSummarySchema(Schema):
    """Counts by action and reason, plus what the run did with them."""

    total = fields.Integer()
    draft = fields.Integer()
    skip = fields.Integer()
    error = fields.Integer()
    by_reason = fields.Dict(keys=fields.String(), values=fields.Integer())
    drafted = fields.Integer()
    written = fields.Integer(metadata={"description": "Rows written back to the sheet."})
    today = fields.String(allow_none=True, metadata={"example": "2026-11-24"})
    timezone = fields.String(allow_none=True, metadata={"example": "Pacific/Auckland"})
    timezone_from = fields.String(
        allow_none=True, metadata={"description": "Where the zone came from: TIMEZONE, the sheet…"}
    )
    dry_run = fields.Boolean()
    alerted = fields.Boolean(metadata={"description": "A Slack alert was delivered."})
    stopped = fields.String(allow_none=True)
    write_error = fields.String(allow_none=True)


class RunSchema(Schema):
    id = fields.String(required=True)
    scope = fields.String(required=True, metadata={"description": "Spreadsheet id or file."})
    state = fields.String(required=True, validate=validate.OneOf(_STATES))
    created_at = fields.DateTime(required=True)
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)
    progress = fields.Nested(ProgressSchema, required=True)
    summary = fields.Nested(RunSummarySchema, required=True)
    results = fields.List(
        fields.Nested(RowResultSchema),
        required=True,
        metadata={"description": "One row per invoice once the run is done; never bodies."},
    )
    error = fields.String(allow_none=True)
