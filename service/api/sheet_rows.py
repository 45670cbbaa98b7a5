"""A request's sheet rows: a plain list, or (for a large sheet) read in parts on several processes.

The rule every row object must meet before it is planned lives here too, so that the schema and
a helper process reading a part of the body check rows alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Rows = list[Mapping[str, object]]

# Google Sheets holds at most 10 million cells, so no sheet has a row beyond this.
MAX_SHEET_ROW = 10_000_000
# How many bad rows a 422 lists.
LISTED_PROBLEMS = 20


def row_problem(row: Any) -> str | None:
    """Why ``row`` is not a row object the API can plan, or None."""
    if type(row) is not dict:
        return "Each row must be an object."
    number = row.get("row")
    if number is None or (type(number) is int and 1 <= number <= MAX_SHEET_ROW):
        return None
    # The results are written back to this row: a row number that is not one would put a
    # reminder's status beside another client's invoice, or nowhere.
    return f"`row` must be a sheet row number from 1 to {MAX_SHEET_ROW:,}."


def row_problems(rows: Iterable[Any], first: int = 0) -> dict[int, str]:
    """The first LISTED_PROBLEMS rows' problems, by index (the first row is ``first``)."""
    problems: dict[int, str] = {}
    for i, row in enumerate(rows, first):
        if (problem := row_problem(row)) is not None:
            problems[i] = problem
            if len(problems) == LISTED_PROBLEMS:
                break
    return problems


@dataclass(eq=False)
class Part:
    """Rows of a sheet after its head: held by a helper process, or read here."""

    start: int  # the index of its first row in the sheet
    count: int
    holder: int | None  # the pid of the helper holding its rows, while one does
    rows: Rows | None = None  # its rows, when read here


@dataclass(eq=False)
class SheetRows:
    """A large sheet's rows read in parts (service/json_split.py): the head's here, the others
    by the helpers that will plan them. ``problems`` are the parts' bad rows, by sheet index."""

    head: Rows
    parts: list[Part]
    texts: list[bytes]  # each part's text, as its helper was sent it: read here if it fails
    ticket: int
    problems: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.head) + sum(part.count for part in self.parts)
