"""Dates as they arrive from a sheet or a file: ISO text, Sheets serial numbers, date values."""

from __future__ import annotations

import datetime as dt
from contextlib import suppress
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from babel import dates as babel_dates

from service.domain.money import babel_locale

# Google Sheets (like Lotus 1-2-3 and Excel's 1900 system without its leap-year bug) counts days
# from 1899-12-30; a fractional part is the time of day, which a due date ignores.
SHEETS_EPOCH = dt.date(1899, 12, 30)
# Serial 1 is 1899-12-31 and 2958465 is 9999-12-31: anything outside cannot be a date cell.
_MAX_SERIAL = 2_958_465


class DateParseError(ValueError):
    """A value that is not a date in any accepted form."""


def from_serial(serial: float | int | Decimal) -> dt.date:
    """A Sheets serial number (days since 1899-12-30, time of day ignored) as a date."""
    try:
        whole = int(serial)
    except (OverflowError, ValueError):  # infinity or NaN: a JSON body or "inf" text can hold one
        whole = 0
    if not 1 <= whole <= _MAX_SERIAL:
        raise DateParseError(f"{serial!r} is not a spreadsheet date serial number")
    return SHEETS_EPOCH + dt.timedelta(days=whole)


def parse_date(value: object, date_format: str | None = None) -> dt.date | None:
    """A date cell (None when empty): a date, a Sheets serial, ISO text or ``date_format`` text.

    ``date_format`` is for files written as ``M/D/YYYY`` (``%m/%d/%Y`` accepts unpadded parts);
    without it, ambiguous text such as ``03/04/2025`` is an error, never a guess.
    """
    if type(value) is str and len(value) == 10 and value[4] == "-":
        try:  # the common case, ISO text from the sidebar or a file
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return from_serial(value)
    if not isinstance(value, str):
        raise DateParseError(f"{value!r} is not a date")
    text = value.strip()
    if not text:
        return None
    if date_format:
        with suppress(ValueError):  # else ISO text and serials are accepted too
            return dt.datetime.strptime(text, date_format).date()
    with suppress(ValueError):
        return dt.date.fromisoformat(text[:10])
    with suppress(InvalidOperation, DateParseError):
        return from_serial(Decimal(text))
    expected = f"{date_format!r} or YYYY-MM-DD" if date_format else "YYYY-MM-DD"
    raise DateParseError(f"{text!r} is not a date (expected {expected} or a date cell)")


def format_date(day: dt.date, locale: str) -> str:
    """``Jan 15, 2025`` (en_US) or ``15.01.2025`` (de_DE): Babel's medium date for the locale."""
    return babel_dates.format_date(day, format="medium", locale=babel_locale(locale))


def today_in(timezone: str, now: dt.datetime) -> dt.date:
    """The date in ``timezone`` at the aware instant ``now``: the spreadsheet's "today", not the
    server's (at 23:00 UTC it is already tomorrow in Auckland)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(ZoneInfo(timezone)).date()
