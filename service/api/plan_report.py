"""The body of a plan response for many rows, planned on every core.

The rows are cut into one contiguous share per process (service/parallel.py). Each share is
planned, written out as JSON and summed up where it runs: on a helper process kept for the
next large sheet (service/helper_processes.py), else in a child forked for this one; the
shares are then joined here. The
one rule that spans shares, an invoice ID on more than one row, is checked after they finish:
each share reports the IDs it holds, and a sheet with an ID in two shares (a mistake, and rare)
is planned again knowing every repeated ID. Finding them first would be a serial pass over
every row of every sheet.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from functools import partial
from typing import Any, NamedTuple

from service.api.jsonio import dump_bytes
from service.domain.decide import repeated_ids
from service.domain.invoice import invoice_ids
from service.helper_processes import HelperProcesses
from service.parallel import Sharing
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


# A sheet row with the required columns is longer than this in JSON (its keys alone are 70
# bytes), so a smaller body is no sheet worth sharing, and starts no helper.
_LEAST_ROW_BYTES = 100

# What a share's process needs: the day (as an ordinal), the repeated IDs when known, whether to
# report the share's IDs, its first sheet row and its rows. Plain values, so marshal carries it.
ShareArg = tuple[int, frozenset[str] | None, bool, int, Rows]


class SheetPlanner:
    """Plans whole sheets for one configuration, a large sheet in shares on every core."""

    def __init__(
        self,
        settings: PlanSettings,
        templates: TemplateSet,
        locale: str,
        sharing: Sharing | None = None,
    ) -> None:
        self.settings = settings
        self.locale = locale
        self.sharing = sharing or Sharing()
        self._shares = HelperProcesses(
            partial(_share_job, settings, templates, locale), self.sharing.processes - 1
        )

    def expect(self, body_bytes: int) -> None:
        """Ready the helper processes when a request body this large may be a sheet to share.
        Called before the body is read, so that they hold none of it."""
        if body_bytes >= self.sharing.min_items * _LEAST_ROW_BYTES:
            self._shares.start()

    @property
    def helper_pids(self) -> list[int]:
        """The helper processes running now."""
        return self._shares.pids

    def close(self) -> None:
        """Stop the helper processes for good."""
        self._shares.close()

    def report(self, raw_rows: Rows, *, today: dt.date) -> PlanReport:
        """Plan every row, one row per sheet row.

        Takes the rows: the list is emptied, so that only the shares hold them.
        """
        slices = self.sharing.slices(len(raw_rows))
        shares = [(2 + start, raw_rows[start:stop]) for start, stop in slices]
        raw_rows.clear()
        day = today.toordinal()
        several = len(shares) > 1
        planned = self._shares.map([(day, None, several, *share) for share in shares])
        if several and _in_several([s.ids or frozenset() for s in planned]):
            every_row = [raw for _, part in shares for raw in part]
            ids = invoice_ids(every_row, self.settings.parse_options)
            duplicates = frozenset(repeated_ids(ids))
            planned = self._shares.map([(day, duplicates, False, *share) for share in shares])
        return PlanReport(
            rows=[s.rows for s in planned],
            summary=add_summaries([s.summary for s in planned]),
            totals=totals_list(add_balances([s.balances for s in planned]), self.locale),
        )


def plan_report(
    raw_rows: Rows,
    *,
    today: dt.date,
    settings: PlanSettings,
    templates: TemplateSet,
    locale: str,
    sharing: Sharing | None = None,
) -> PlanReport:
    """SheetPlanner(...).report(raw_rows): with no helper processes, a large sheet's shares go to
    children forked for it."""
    return SheetPlanner(settings, templates, locale, sharing).report(raw_rows, today=today)


def _in_several(id_sets: list[frozenset[str]]) -> bool:
    """True when some ID is in more than one of the sets."""
    return sum(map(len, id_sets)) != len(frozenset().union(*id_sets))


def _share_job(
    settings: PlanSettings, templates: TemplateSet, locale: str, arg: ShareArg
) -> _Share:
    day, duplicates, report_ids, first_row, raw_rows = arg
    # Sheet rows are numbered from 2 (the header is row 1), wherever the share starts.
    planned = plan(
        raw_rows,
        today=dt.date.fromordinal(day),
        settings=settings,
        templates=templates,
        first_row=first_row,
        duplicates=duplicates,
    )
    rows = [planned_row_dict(p, locale=locale) for p in planned]
    ids = frozenset(p.invoice_id for p in planned) - {""} if report_ids else None
    return _Share(dump_bytes(rows), summarize(rows), overdue_balances(planned), ids)
