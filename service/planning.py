"""plan(): parse every row, decide its stage and render the reminder — no side effects."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from service.domain.decide import Action, Decision, Policy, Reason, decide, duplicate_ids
from service.domain.invoice import HeaderIndex, Invoice, ParseOptions, RowError, parse_row
from service.rendering import (
    RenderedEmail,
    RenderSettings,
    TemplateLoadError,
    TemplateSet,
    merge_fields,
)


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

    @property
    def is_draft(self) -> bool:
        """True when this row should get a draft today."""
        return self.decision.action is Action.DRAFT


def _row_number(raw: Mapping[str, object], position: int) -> int | None:
    value = raw.get("row")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return position


def plan(
    raw_rows: Sequence[Mapping[str, object]],
    *,
    today: dt.date,
    settings: PlanSettings,
    templates: TemplateSet,
    render: bool = True,
    first_row: int = 2,
) -> list[PlannedRow]:
    """Decide every row for ``today``; one bad row becomes an error row, never an exception.

    ``first_row`` numbers rows that carry no ``row`` of their own as a sheet would (the header
    is row 1).
    """
    index = HeaderIndex(settings.parse_options)
    parsed: list[Invoice | RowError] = [
        parse_row(raw, settings.parse_options, _row_number(raw, first_row + i), index)
        for i, raw in enumerate(raw_rows)
    ]
    duplicates = duplicate_ids(parsed)
    out: list[PlannedRow] = []
    for item in parsed:
        if isinstance(item, RowError):
            out.append(
                PlannedRow(
                    item.row,
                    item.invoice_id,
                    Decision(Action.ERROR, Reason.INVALID_ROW),
                    errors=item.fields,
                )
            )
            continue
        if item.invoice_id in duplicates:
            message = f"invoice_id {item.invoice_id!r} appears on more than one row"
            out.append(
                PlannedRow(
                    item.row,
                    item.invoice_id,
                    Decision(Action.ERROR, Reason.DUPLICATE_INVOICE_ID),
                    item,
                    errors={"invoice_id": message},
                )
            )
            continue
        decision = decide(item, today, settings.policy)
        out.append(
            _render(item, decision, settings, templates) if render else _bare(item, decision)
        )
    return out


def _bare(invoice: Invoice, decision: Decision) -> PlannedRow:
    return PlannedRow(invoice.row, invoice.invoice_id, decision, invoice)


def _render(
    invoice: Invoice, decision: Decision, settings: PlanSettings, templates: TemplateSet
) -> PlannedRow:
    if decision.action is not Action.DRAFT or decision.stage is None:
        return _bare(invoice, decision)
    fields = merge_fields(
        invoice,
        days_overdue=decision.days_overdue or 0,
        stage=decision.stage,
        settings=settings.render,
    )
    try:
        email = templates.render(decision.stage, fields)
    except TemplateLoadError as exc:
        return PlannedRow(
            invoice.row,
            invoice.invoice_id,
            Decision(Action.ERROR, Reason.TEMPLATE_ERROR, decision.days_overdue, decision.stage),
            invoice,
            errors={"template": str(exc)},
        )
    return PlannedRow(invoice.row, invoice.invoice_id, decision, invoice, email=email)
