"""The body of a plan response for many rows, planned on every core.

The rows are cut into one contiguous share per process (service/parallel.py). Each share is
planned, written out as JSON and summed up where it runs: on a helper process kept for the
next large sheet (service/helper_processes.py), else in a child forked for this one; the
shares are then joined here.

A large sheet's body is not even read whole here: ``read`` cuts it between rows
(service/json_split.py) and sends each helper the text of its part, to read, check and keep
while this process reads the head; ``report`` then asks each helper to plan the rows it holds.
Reading the body was a quarter of a 20,000-row plan, and no helper could start before it
was done. Any part that goes wrong (a helper gone, a body laid out otherwise) is read here,
or the body read whole, as before.

The one rule that spans shares, an invoice ID on more than one row, is checked after they
finish: each share reports the IDs it holds, and a sheet with an ID in two shares (a mistake,
and rare) is planned again knowing every repeated ID. Finding them first would be a serial
pass over every row of every sheet.
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

from service import json_split
from service.api.jsonio import dump_bytes
from service.api.sheet_rows import Part, Rows, SheetRows, row_problems
from service.domain.decide import repeated_ids
from service.domain.invoice import invoice_ids
from service.helper_processes import HelperProcesses, Round
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


class _Held(NamedTuple):
    """A helper's answer to a part of a body: how many rows it read (none: it does not read, as
    orjson reads it) and their problems, by index in the part."""

    rows: int
    problems: dict[int, str]


# A sheet row with the required columns is longer than this in JSON (its keys alone are 70
# bytes), so a smaller body is no sheet worth sharing, and starts no helper.
_LEAST_ROW_BYTES = 100
_ROWS_KEY = "invoices"

# What a share's process is asked, as plain values that marshal carries:
# ("plan", day as an ordinal, the repeated IDs when known, whether to report the share's IDs,
#  its first sheet row, its rows or the ticket of the rows it holds);
# ("hold", ticket, a part's text): read the rows and keep them for the "plan" with that ticket;
# ("drop",): forget the rows held.
ShareArg = tuple[Any, ...]


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
        self._plan = partial(_plan_share, settings, templates, locale)
        self._shares: HelperProcesses[ShareArg, Any] = HelperProcesses(
            partial(_share_job, self._plan, {}), self.sharing.processes - 1
        )
        self._tickets = itertools.count(1)

    def expect(self, body_bytes: int) -> None:
        """Ready the helper processes when a request body this large may be a sheet to share.
        Called before the body is read, so that they hold none of it."""
        if self._large(body_bytes):
            self._shares.start()

    @property
    def helper_pids(self) -> list[int]:
        """The helper processes running now."""
        return self._shares.pids

    def close(self) -> None:
        """Stop the helper processes for good."""
        self._shares.close()

    def read(self, body: bytes) -> dict[str, Any] | None:
        """A large sheet's request body as loads() reads it, but for its rows: SheetRows, read in
        parts, the head here while each helper reads and keeps another; the body itself is not
        kept (only its parts' texts, in case a helper fails). None when the body is
        not read so (small, no idle helper, another layout, or a part that does not read):
        then read it whole."""
        if not self._large(len(body)):
            return None
        with self._shares.round() as work:
            if work is None or not work.idle:
                return None
            # The body's bytes are shared as its rows would be (a row's text is its cost).
            bounds = Sharing(work.idle + 1, 0, self.sharing.elsewhere).slices(len(body))
            cuts = json_split.cut(body, [start for start, _ in bounds[1:]])
            if cuts is None:
                return None
            ticket = next(self._tickets)
            texts = [json_split.part_text(body, cuts, i) for i in range(1, len(cuts.commas) + 1)]
            pids = work.send([("hold", ticket, text) for text in texts])
            started = time.monotonic()
            document = json_split.read_head(body, cuts, _ROWS_KEY)
            held: list[_Held | None] = work.receive(pids, self._shares.deadline(started))
            holders = [pid for pid, h in zip(pids, held, strict=True) if pid and h and h.rows]
            if document is None or len(holders) < sum(h is not None for h in held):
                self._drop(work, holders)
                return None
            sheet = SheetRows(document[_ROWS_KEY], [], texts, ticket)
            for index, (pid, answer) in enumerate(zip(pids, held, strict=True), 1):
                start = len(sheet)
                if answer is not None:
                    sheet.parts.append(Part(start, answer.rows, pid))
                    sheet.problems |= {start + i: p for i, p in answer.problems.items()}
                    continue
                # Its helper failed: read here.
                rows = json_split.read_part(texts[index - 1])
                if rows is None:
                    self._drop(work, holders)
                    return None
                sheet.parts.append(Part(start, len(rows), None, rows))
                sheet.problems |= row_problems(rows, start)
            document[_ROWS_KEY] = sheet
            return document

    def forget(self, rows: object) -> None:
        """Let the helpers drop the rows they hold for ``rows`` (a request that ended before its
        plan: refused, or failed)."""
        if not isinstance(rows, SheetRows):
            return
        holders = [part.holder for part in rows.parts if part.holder is not None]
        for part in rows.parts:
            part.holder = None
        if holders:
            with self._shares.round() as work:
                if work is not None:
                    self._drop(work, holders)

    def report(self, raw_rows: Rows | SheetRows, *, today: dt.date) -> PlanReport:
        """Plan every row, one row per sheet row.

        Takes the rows: the list is emptied, so that only the shares hold them.
        """
        day = today.toordinal()
        if isinstance(raw_rows, SheetRows):
            return self._report_parts(raw_rows, day)
        slices = self.sharing.slices(len(raw_rows))
        shares = [(2 + start, raw_rows[start:stop]) for start, stop in slices]
        raw_rows.clear()
        return self._report_shares(shares, day)

    def _report_shares(self, shares: list[tuple[int, Rows]], day: int) -> PlanReport:
        several = len(shares) > 1
        planned: list[_Share] = self._shares.map(
            [("plan", day, None, several, *share) for share in shares]
        )
        if several and _in_several([s.ids or frozenset() for s in planned]):
            planned = self._replan(shares, day)
        return _joined(planned, self.locale)

    def _report_parts(self, sheet: SheetRows, day: int) -> PlanReport:
        held = [part for part in sheet.parts if part.holder is not None]
        with self._shares.round() as work:
            args = [("plan", day, None, True, 2 + p.start, sheet.ticket) for p in held]
            pids = work.send(args, [p.holder for p in held]) if work else [None] * len(held)
            for part, pid in zip(held, pids, strict=True):
                if pid is not None:  # it gives the rows up as it plans them
                    part.holder = None
            started = time.monotonic()
            first = self._plan(day, None, True, 2, sheet.head)
            deadline = self._shares.deadline(started)
            answers = work.receive(pids, deadline) if work else [None] * len(held)
        replies: dict[int, _Share | None] = dict(zip(map(id, held), answers, strict=True))
        self.forget(sheet)  # a helper that was not sent its plan still holds its rows
        planned = [first]
        for index, part in enumerate(sheet.parts, 1):
            reply = replies.get(id(part))
            if reply is None:  # its helper failed, or it was read here
                reply = self._plan(day, None, True, 2 + part.start, _rows_here(sheet, index))
            planned.append(reply)
        if _in_several([s.ids or frozenset() for s in planned]):
            every = [(2 + p.start, _rows_here(sheet, i)) for i, p in enumerate(sheet.parts, 1)]
            planned = self._replan([(2, sheet.head), *every], day)
        sheet.head = []
        return _joined(planned, self.locale)

    def _replan(self, shares: list[tuple[int, Rows]], day: int) -> list[_Share]:
        """The shares planned again, knowing every invoice ID on more than one row."""
        every_row = [raw for _, part in shares for raw in part]
        duplicates = frozenset(repeated_ids(invoice_ids(every_row, self.settings.parse_options)))
        replanned: list[_Share] = self._shares.map(
            [("plan", day, duplicates, False, *share) for share in shares]
        )
        return replanned

    def _drop(self, work: Round[ShareArg, Any], pids: list[int]) -> None:
        sent = work.send([("drop",)] * len(pids), pids)
        work.receive(sent, self._shares.deadline(time.monotonic()))

    def _large(self, body_bytes: int) -> bool:
        return body_bytes >= self.sharing.min_items * _LEAST_ROW_BYTES


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


def _joined(planned: list[_Share], locale: str) -> PlanReport:
    return PlanReport(
        rows=[s.rows for s in planned],
        summary=add_summaries([s.summary for s in planned]),
        totals=totals_list(add_balances([s.balances for s in planned]), locale),
    )


def _rows_here(sheet: SheetRows, index: int) -> Rows:
    """Part ``index``'s rows, read here once (its helper read them before, so they read)."""
    part = sheet.parts[index - 1]
    if part.rows is None:
        part.rows = json_split.read_part(sheet.texts[index - 1])
        if part.rows is None:
            raise RuntimeError("a part of the body that a helper read does not read here")
    return part.rows


def _in_several(id_sets: list[frozenset[str]]) -> bool:
    """True when some ID is in more than one of the sets."""
    return sum(map(len, id_sets)) != len(frozenset().union(*id_sets))


def _share_job(plan_share: Callable[..., _Share], held: dict[int, Rows], arg: ShareArg) -> Any:
    """A share's work, on a helper process or here: see ShareArg. ``held`` is the rows a helper
    keeps from a "hold" to its "plan" (its own: a helper is a forked process)."""
    if arg[0] == "hold":
        _, ticket, text = arg
        held.clear()
        rows = json_split.read_part(text)
        if rows is None:
            return _Held(0, {})
        held[ticket] = rows
        return _Held(len(rows), row_problems(rows))
    if arg[0] == "drop":
        held.clear()
        return _Held(0, {})
    _, day, duplicates, report_ids, first_row, rows = arg
    return plan_share(
        day, duplicates, report_ids, first_row, held.pop(rows) if isinstance(rows, int) else rows
    )


def _plan_share(
    settings: PlanSettings,
    templates: TemplateSet,
    locale: str,
    day: int,
    duplicates: frozenset[str] | None,
    report_ids: bool,
    first_row: int,
    raw_rows: Rows,
) -> _Share:
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
