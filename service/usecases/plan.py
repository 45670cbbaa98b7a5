"""plan(): parse every row, decide its stage and render the reminder — no side effects."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from service.domain.decide import Action, Decision, Policy, Reason, decide, duplicate_ids
from service.domain.fixes import fix_for, fix_for_duplicate
from service.domain.invoice import Invoice, ParseOptions, RowError, field_names, parse_row
from service.rendering import (
    RenderedEmail,
    RenderSettings,
    TemplateLoadError,
    TemplateSet,
    merge_fields,
    template_name,
)

# The header is a sheet's row 1: rows without a number of their own are numbered from 2.
FIRST_ROW = 2


@dataclass(frozen=True)
class PlanSettings:
    """What plan() needs from the configuration."""

    policy: Policy
    parse_options: ParseOptions
    render: RenderSettings


@dataclass(frozen=True)
class PlannedRow:
    """One row's decision and, for drafts, its rendered email."""

    row: int | None
    invoice_id: str
    decision: Decision
    invoice: Invoice | None = None
    errors: Mapping[str, str] | None = None
    email: RenderedEmail | None = None
    fix: str | None = None  # for an error row: what the bookkeeper should do, in plain words

    @property
    def is_draft(self) -> bool:
        """True when this row should get a draft today."""
        return self.decision.action is Action.DRAFT


def _row_number(raw: Mapping[str, object], position: int) -> int:
    value = raw.get("row")
    return value if isinstance(value, int) and not isinstance(value, bool) else position


def plan(
    raw_rows: Sequence[Mapping[str, object]],
    *,
    today: dt.date,
    settings: PlanSettings,
    templates: TemplateSet,
    render: bool = True,
) -> list[PlannedRow]:
    """Decide every row for ``today``; one bad row becomes an error row, never an exception.
    A row's integer ``row`` is its sheet row number, else it is numbered as a sheet would. With
    ``render`` each draft row carries its email (a preview); the drafts use case renders at
    draft time instead, once, with the payment link."""
    options = settings.parse_options
    # A sheet's rows share its headers: match them to our fields once.
    names = field_names(set().union(*raw_rows), options)
    parsed = [
        parse_row(raw, options, _row_number(raw, position), names)
        for position, raw in enumerate(raw_rows, FIRST_ROW)
    ]
    duplicates = duplicate_ids(parsed)
    columns = {field: header for header, field in names.items()}
    out: list[PlannedRow] = []
    for item in parsed:
        if isinstance(item, RowError):
            error = Decision(Action.ERROR, Reason.INVALID_ROW)
            fix = fix_for(item.fields, columns)
            out.append(PlannedRow(item.row, item.invoice_id, error, errors=item.fields, fix=fix))
        elif item.invoice_id in duplicates:
            message = f"invoice_id {item.invoice_id!r} appears on more than one row"
            error = Decision(Action.ERROR, Reason.DUPLICATE_INVOICE_ID)
            fix = fix_for_duplicate(item.invoice_id, duplicates[item.invoice_id])
            out.append(
                PlannedRow(item.row, item.invoice_id, error, item, {"invoice_id": message}, fix=fix)
            )
        else:
            decision = decide(item, today, settings.policy)
            planned = PlannedRow(item.row, item.invoice_id, decision, item)
            if render and planned.is_draft:
                planned = render_email(planned, settings.render, templates)
            out.append(planned)
    return out


def render_email(
    planned: PlannedRow, settings: RenderSettings, templates: TemplateSet, payment_link: str = ""
) -> PlannedRow:
    """The row with its stage's email rendered, or as a ``template_error`` row."""
    invoice, decision = planned.invoice, planned.decision
    assert invoice is not None and decision.stage is not None  # a draft has both
    fields = merge_fields(
        invoice,
        days_overdue=decision.days_overdue or 0,
        stage=decision.stage,
        settings=settings,
        payment_link=payment_link,
        only=templates.fields_used(decision.stage),
    )
    try:
        return replace(planned, email=templates.render(decision.stage, fields))
    except TemplateLoadError as exc:
        error = Decision(Action.ERROR, Reason.TEMPLATE_ERROR, decision.days_overdue, decision.stage)
        fix = f"Fix the {template_name(decision.stage)} template (see Test connection): {exc}"
        return replace(planned, decision=error, errors={"template": str(exc)}, fix=fix)
