"""The body of a plan response for many rows, planned on every core.

The rows are cut into one contiguous share per process (service/parallel.py). Each share is
planned, written out as JSON and summed up where it runs; the shares are then joined here. The
one rule that spans shares, an invoice ID on more than one row, is checked after they finish:
each share reports the IDs it holds, and a sheet with an ID in two shares (a mistake, and rare)
is planned again knowing every repeated ID. Finding them first would be a serial pass over
every row of every sheet.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from functools import partial
from typing import Any, NamedTuple

from service.api.jsonio import dump_bytes
from service.domain.decide import repeated_ids
from service.domain.invoice import invoice_ids
from service.parallel import Sharing, fork_map
from service.planning import PlanSettings, plan
from service.rendering import TemplateSet
from service.results import (
    Balances,
    add_balances,
    add_summaries,
    overdue_balances,
    planned_row_dict,
    summarize,
    totals_list,
)

Rows = list[Mapping[str, object]]


class PlanReport(NamedTuple):
    """A plan's rows (JSON arrays, one per share, in sheet order), summary and overdue totals."""

    rows: list[bytes]
    summary: dict[str, Any]
    totals: list[dict[str, Any]]


class _Share(NamedTuple):
    rows: bytes
    summary: dict[str, Any]
    balances: Balances
    ids: frozenset[str] | None  # its non-empty invoice IDs, when asked for


def plan_report(
    raw_rows: Rows,
    *,
    today: dt.date,
    settings: PlanSettings,
    templates: TemplateSet,
    locale: str,
    sharing: Sharing | None = None,
) -> PlanReport:
    """Plan every row (a large sheet on ``sharing.processes`` cores), one row per sheet row.

    Takes the rows: the list is emptied, so that only the shares hold them.
    """
    slices = (sharing or Sharing()).slices(len(raw_rows))
    shares = [(2 + start, raw_rows[start:stop]) for start, stop in slices]
    raw_rows.clear()
    several = len(shares) > 1
    plan_shares = partial(_plan_share, today, settings, templates, locale)
    planned = fork_map(partial(plan_shares, None, several), shares)
    if several and _in_several([s.ids or frozenset() for s in planned]):
        every_row = [raw for _, part in shares for raw in part]
        duplicates = repeated_ids(invoice_ids(every_row, settings.parse_options))
        planned = fork_map(partial(plan_shares, duplicates, False), shares)
    return PlanReport(
        rows=[s.rows for s in planned],
        summary=add_summaries([s.summary for s in planned]),
        totals=totals_list(add_balances([s.balances for s in planned]), locale),
    )


def _in_several(id_sets: list[frozenset[str]]) -> bool:
    """True when some ID is in more than one of the sets."""
    return sum(map(len, id_sets)) != len(frozenset().union(*id_sets))


def _plan_share(
    today: dt.date,
    settings: PlanSettings,
    templates: TemplateSet,
    locale: str,
    duplicates: Collection[str] | None,
    report_ids: bool,
    share: tuple[int, Rows],
) -> _Share:
    # Sheet rows are numbered from 2 (the header is row 1), wherever the share starts.
    first_row, raw_rows = share
    planned = plan(
        raw_rows,
        today=today,
        settings=settings,
        templates=templates,
        first_row=first_row,
        duplicates=duplicates,
    )
    rows = [planned_row_dict(p, locale=locale) for p in planned]
    ids = frozenset(p.invoice_id for p in planned) - {""} if report_ids else None
    return _Share(dump_bytes(rows), summarize(rows), overdue_balances(planned), ids)
