"""Business days: which days a reminder may be drafted on (weekends and public holidays not)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Container
from dataclasses import dataclass, field

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, eq=False)
class BusinessCalendar:
    """Weekend days and public holidays (any container of dates, e.g. the ``holidays``
    package's, which computes each year when first asked)."""

    weekend: frozenset[int] = frozenset({5, 6})  # Saturday, Sunday (date.weekday(): Monday is 0)
    holidays: Container[dt.date] = field(default_factory=frozenset)

    def is_business_day(self, day: dt.date) -> bool:
        """Neither a weekend day nor a holiday."""
        return day.weekday() not in self.weekend and day not in self.holidays

    def next_business_day(self, day: dt.date) -> dt.date:
        """``day`` itself when it is a business day, else the first one after it."""
        for offset in range(366):
            candidate = day + dt.timedelta(days=offset)
            if self.is_business_day(candidate):
                return candidate
        raise ValueError("no business day within a year: check WEEKEND and the holidays")


def weekend_days(names: str) -> frozenset[int]:
    """``"sat,sun"`` as weekday numbers; ``""`` for none."""
    days = {name.strip().lower()[:3] for name in names.split(",") if name.strip()}
    unknown = days - set(WEEKDAYS)
    if unknown:
        raise ValueError(f"unknown weekday(s) {', '.join(sorted(unknown))}: use mon…sun")
    if len(days) == len(WEEKDAYS):
        raise ValueError("every day of the week cannot be a weekend")
    return frozenset(WEEKDAYS.index(day) for day in days)
