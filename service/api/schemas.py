"""The single description of every payload: validates requests, serialises responses and
generates the OpenAPI document. Unknown request fields are refused (marshmallow's default)."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from marshmallow import Schema, ValidationError, fields, validate, validates

# Google Sheets holds at most 10 million cells, so no sheet has a row beyond this.
MAX_SHEET_ROW = 10_000_000
# How many bad rows a 422 lists.
LISTED_PROBLEMS = 20


class ErrorBodySchema(Schema):
    code = fields.String(required=True, metadata={"example": "invalid_request"})
    message = fields.String(required=True)
    details = fields.Raw(allow_none=True)


class ErrorResponseSchema(Schema):
    error = fields.Nested(ErrorBodySchema, required=True)


class HealthSchema(Schema):
    status = fields.String(required=True, metadata={"example": "ok"})


class InvoiceRows(fields.List):  # type: ignore[type-arg]
    """Row objects with an optional sheet row number `row`; cells are free-form, since the domain
    parser reports per-field errors per row: a bad cell costs its row, not the request."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(fields.Dict(keys=fields.String(), values=fields.Raw()), **kwargs)

    def _deserialize(  # type: ignore[override]
        self, value: object, attr: Any, data: Any, **kwargs: Any
    ) -> list[Any]:
        if not isinstance(value, list):
            raise ValidationError("Not a valid list of rows.")
        problems: dict[int, list[str]] = {}
        for i, row in enumerate(value):
            if not isinstance(row, dict):
                problems[i] = ["Each row must be an object."]
            elif (number := row.get("row")) is not None and not (
                type(number) is int and 1 <= number <= MAX_SHEET_ROW
            ):
                # The results are written back to this row: a row number that is not one would
                # put a reminder's status beside another client's invoice, or nowhere.
                problems[i] = [f"`row` must be a sheet row number from 1 to {MAX_SHEET_ROW:,}."]
            if len(problems) == LISTED_PROBLEMS:
                break
        if problems:
            raise ValidationError(problems)
        return value


class PlanRequestSchema(Schema):
    today = fields.Date(
        load_default=None,
        metadata={"description": "The spreadsheet's date; default: today in `timezone`."},
    )
    timezone = fields.String(
        load_default=None,
        validate=validate.Length(max=64),
        metadata={"description": "IANA timezone, e.g. Pacific/Auckland", "example": "UTC"},
    )
    scope = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=200),
        metadata={"description": "The spreadsheet id or file the rows come from."},
    )
    invoices = InvoiceRows(
        required=True,
        metadata={
            "description": "Rows keyed by the sheet's headers (DESIGN §3); "
            "an optional integer `row` (1 to 10,000,000) is the sheet row the results "
            "belong to; without it, rows are numbered from 2 in order."
        },
    )

    @validates("timezone")
    def _known_timezone(self, value: str | None, **_: Any) -> None:
        if value is None:
            return
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValidationError(f"{value!r} is not an IANA timezone") from None

    @validates("scope")
    def _printable_scope(self, value: str | None, **_: Any) -> None:
        # The scope keys the ledger and goes into each draft's X-Invoice-Collector-Key header:
        # a control character would break the header (CR/LF) or PostgreSQL's text (NUL).
        if value is not None and (not value.isprintable() or not value.strip()):
            raise ValidationError("Must be printable text, with no control characters.")


class DraftsRequestSchema(PlanRequestSchema):
    dry_run = fields.Boolean(
        load_default=False, metadata={"description": "Plan and report; create nothing."}
    )


class WritebackSchema(Schema):
    last_stage_sent = fields.Integer(allow_none=True)
    last_sent_at = fields.String(allow_none=True, metadata={"example": "2026-11-24"})
    reminder_status = fields.String()


class RowResultSchema(Schema):
    row = fields.Integer(allow_none=True)
    invoice_id = fields.String(required=True)
    client_name = fields.String()
    to = fields.List(fields.String())
    days_overdue = fields.Integer(allow_none=True)
    stage = fields.Integer(allow_none=True)
    action = fields.String(required=True, validate=validate.OneOf(("draft", "skip", "error")))
    reason = fields.String(required=True)
    message = fields.String(required=True)
    errors = fields.Dict(keys=fields.String(), values=fields.String())
    fix = fields.String(
        metadata={"description": "For an error row: what to change in the sheet, in plain words."}
    )
    draft_on = fields.Date(
        metadata={"description": "not_business_day: the day the reminder will be drafted."}
    )
    currency = fields.String()
    balance = fields.String(metadata={"description": "Decimal as text"})
    amount_formatted = fields.String()
    subject = fields.String()
    body = fields.String()
    draft_id = fields.String(allow_none=True)
    message_id = fields.String(allow_none=True)
    thread_id = fields.String(allow_none=True)
    draft_url = fields.String(allow_none=True)
    retryable = fields.Boolean()
    drafted_by = fields.String(
        metadata={"description": "duplicate: the other mailbox whose Drafts hold the draft."}
    )
    waiting_since = fields.Date(
        metadata={"description": "previous_unsent: the day the unsent draft was made."}
    )
    payment_link = fields.String(allow_none=True)
    writeback = fields.Nested(WritebackSchema)


class SummarySchema(Schema):
    total = fields.Integer(required=True)
    draft = fields.Integer(required=True)
    skip = fields.Integer(required=True)
    error = fields.Integer(required=True)
    by_reason = fields.Dict(keys=fields.String(), values=fields.Integer())
    drafted = fields.Integer()


class TotalSchema(Schema):
    currency = fields.String(required=True)
    count = fields.Integer(required=True)
    balance = fields.String(required=True)
    balance_formatted = fields.String(required=True)


class MoneySchema(Schema):
    amount = fields.String(required=True, metadata={"description": "Decimal as text"})
    formatted = fields.String(required=True, metadata={"example": "$1,234.50"})


class BucketSchema(MoneySchema):
    bucket = fields.String(
        required=True, validate=validate.OneOf(("current", "1-30", "31-60", "61-90", "90+"))
    )


class ClientBalanceSchema(MoneySchema):
    client_name = fields.String(required=True)


class AgingSchema(Schema):
    """One currency's open balances by days past due, top overdue clients and DSO."""

    currency = fields.String(required=True)
    buckets = fields.List(fields.Nested(BucketSchema), required=True)
    open = fields.Nested(MoneySchema, required=True)
    top_clients = fields.List(fields.Nested(ClientBalanceSchema), required=True)
    dso_days = fields.String(
        allow_none=True,
        metadata={"description": "Open receivables ÷ invoiced in the last 90 days × 90."},
    )
    dso_note = fields.String(allow_none=True, metadata={"example": "needs sent_date"})


class PlanResponseSchema(Schema):
    today = fields.Date(required=True)
    timezone = fields.String(required=True)
    scope = fields.String(allow_none=True)
    summary = fields.Nested(SummarySchema, required=True)
    totals = fields.List(fields.Nested(TotalSchema), required=True)
    aging = fields.List(
        fields.Nested(AgingSchema),
        metadata={"description": "Per currency, from the rows of this request (plan only)."},
    )
    rows = fields.List(fields.Nested(RowResultSchema), required=True)
    dry_run = fields.Boolean()
    stopped = fields.String(allow_none=True)
    remaining = fields.Integer(
        metadata={
            "description": "Rows due a draft that this call left for the next one (its time "
            "budget ran out; they have reason `time_budget`): send the same rows again."
        }
    )


class TemplateSchema(Schema):
    stage = fields.Integer(required=True)
    file = fields.String(required=True)
    ok = fields.Boolean(required=True)
    error = fields.String(allow_none=True)
    fields_used = fields.List(fields.String(), data_key="fields")
    subject = fields.String(allow_none=True)
    source = fields.String()


class TemplatesResponseSchema(Schema):
    stages = fields.List(fields.Integer(), required=True)
    merge_fields = fields.List(fields.String(), required=True)
    templates = fields.List(fields.Nested(TemplateSchema), required=True)
    errors = fields.Dict(keys=fields.String(), values=fields.String(), required=True)


_STATES = ("queued", "running", "done", "failed")


class RunRequestSchema(Schema):
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
