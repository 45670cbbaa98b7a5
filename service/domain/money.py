"""Money as Decimal: parsed once at the edge, formatted once (with Babel) at render time."""

from __future__ import annotations

import re
from decimal import Decimal
from functools import lru_cache

from babel.numbers import format_currency, is_currency

# Currency symbols and codes a bookkeeper types around a number: "$1,234.50", "1 234,50 EUR"
# is *not* accepted (comma decimals are ambiguous); "USD 1,234.50" and "€1,234.50" are.
_DECORATION = re.compile(r"^[A-Za-z]{0,3}\s*[$€£¥₹]?\s*|\s*[A-Za-z]{0,3}$")
_NUMBER = re.compile(r"^-?\d{1,3}(,\d{3})*(\.\d+)?$|^-?\d+(\.\d+)?$")


class MoneyParseError(ValueError):
    """A value that is not an amount of money."""


def parse_amount(value: object) -> Decimal | None:
    """Parse an amount cell into a Decimal; ``None`` for an empty cell.

    Numbers pass through ``str`` so a float such as 0.1 becomes Decimal('0.1'), not its binary
    approximation. Text may carry a currency symbol or code and thousands separators; a
    parenthesised amount is negative, as accountants write it.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise MoneyParseError(f"{value!r} is not an amount")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | float):
        result = Decimal(str(value))
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        negative = text.startswith("(") and text.endswith(")")
        if negative:
            text = text[1:-1].strip()
        core = _DECORATION.sub("", text).replace(" ", "")
        if core.startswith("-") and negative:
            raise MoneyParseError(f"{value!r} is not an amount")
        if not _NUMBER.match(core):
            raise MoneyParseError(
                f"{value!r} is not an amount (expected e.g. 1234.50 or $1,234.50)"
            )
        result = Decimal(core.replace(",", ""))
        if negative:
            result = -result
    else:
        raise MoneyParseError(f"{value!r} is not an amount")
    if not result.is_finite():
        raise MoneyParseError(f"{value!r} is not a finite amount")
    return result


@lru_cache(maxsize=512)
def is_known_currency(code: str) -> bool:
    """True when the code is an ISO 4217 currency Babel knows."""
    return len(code) == 3 and code.isupper() and is_currency(code)


@lru_cache(maxsize=4096)
def format_money(amount: Decimal, currency: str, locale: str) -> str:
    """``$1,234.50`` for the locale; cached because a run repeats the same few amounts."""
    return format_currency(amount, currency, locale=locale)
