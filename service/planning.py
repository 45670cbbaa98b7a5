"""plan(): parse every row, decide its stage and render the reminder — no side effects."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

from service.domain.decide import Action, Decision, Policy, Reason, decider, duplicate_ids
from service.domain.invoice import Invoice, ParseOptions, RowError, parse_rows
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


class PlannedRow(NamedTuple):
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


# PlannedRow from its six fields without a Python-level call: a plan builds one per row.
_planned = partial(tuple.__new__, PlannedRow)


def _row_numbers(raw_rows: Sequence[Mapping[str, object]], first_row: int) -> list[int | None]:
    numbers: list[int | None] = list(range(first_row, first_row + len(raw_rows)))
    if any("row" in raw for raw in raw_rows):
        for i, raw in enumerate(raw_rows):
            value = raw.get("row")
            if isinstance(value, int) and not isinstance(value, bool):
                numbers[i] = value
    return numbers


def plan(
    raw_rows: Sequence[Mapping[str, object]],
    *,
    today: dt.date,
    settings: PlanSettings,
    templates: TemplateSet,
    render: bool = True,
    first_row: int = 2,
    duplicates: Collection[str] | None = None,
) -> list[PlannedRow]:
    """Decide every row for ``today``; one bad row becomes an error row, never an exception.

    Rows carry their sheet row number as an integer ``row``; the others are numbered from
    ``first_row`` as a sheet would (the header is row 1). ``duplicates`` are the invoice IDs on
    more than one row of the whole sheet, when ``raw_rows`` are only part of it.
    """
    parsed = parse_rows(raw_rows, settings.parse_options, _row_numbers(raw_rows, first_row))
    if duplicates is None:
        duplicates = duplicate_ids(parsed)
    decide_one = decider(today, settings.policy)
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
        elif duplicates and item.invoice_id in duplicates:
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
        else:
            decision = decide_one(item)
            if render and decision.action is Action.DRAFT:
                out.append(_render(item, decision, settings, templates))
            else:
                out.append(_planned((item.row, item.invoice_id, decision, item, None, None)))
    return out


def _render(
    invoice: Invoice, decision: Decision, settings: PlanSettings, templates: TemplateSet
) -> PlannedRow:
    assert decision.stage is not None  # a draft always has its stage
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
    return PlannedRow(invoice.row, invoice.invoice_id, decision, invoice, None, email)
