"""Money as Decimal: parsed once at the edge, formatted once (with Babel) at render time."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from functools import lru_cache

from babel import Locale
from babel.numbers import (
    format_currency,
    format_decimal,
    get_currency_precision,
    get_currency_symbol,
    get_decimal_symbol,
    get_group_symbol,
    is_currency,
)

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
    if type(value) is str and value.replace(".", "", 1).isdigit():
        return Decimal(value)  # the common case: plain digits with at most one point
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


Formatter = Callable[[Decimal], str]


@lru_cache(maxsize=256)
def _compiled(currency: str | None, locale: str) -> Formatter | None:
    """A fast formatter equivalent to Babel's for this locale, or None to use Babel itself.

    Babel re-reads the locale's pattern on every call (~16 µs); a plan of 100k rows formats
    two amounts per draft. Symbols, separators, digits and the prefix/suffix all come from
    Babel's own locale data, and tests compare the two across locales and currencies. Patterns
    this shortcut does not model (non-3-digit grouping such as en_IN, exotic digits) use Babel.
    """
    loc = Locale.parse(locale)
    if loc.number_symbols.get("latn") is None and loc.default_numbering_system != "latn":
        return None
    if currency is None:
        pattern = loc.decimal_formats[None]
        digits = 2
        prefix, suffix = "", ""
    else:
        pattern = loc.currency_formats["standard"]
        digits = get_currency_precision(currency)
        symbol = get_currency_symbol(currency, locale)
        prefix = pattern.prefix[0].replace("¤", symbol)
        suffix = pattern.suffix[0].replace("¤", symbol)
    if pattern.grouping != (3, 3) or pattern.int_prec[0] > 1:
        return None
    decimal_sep = get_decimal_symbol(locale)
    group_sep = get_group_symbol(locale)
    spec = f",.{digits}f"
    if (group_sep, decimal_sep) == (",", "."):

        def fmt(amount: Decimal) -> str:
            return prefix + format(amount, spec) + suffix

        return fmt
    swap = str.maketrans({",": group_sep, ".": decimal_sep})

    def fmt_swapped(amount: Decimal) -> str:
        return prefix + format(amount, spec).translate(swap) + suffix

    return fmt_swapped


def format_money(amount: Decimal, currency: str, locale: str) -> str:
    """``$1,234.50`` (en_US) or ``1.234,50 €`` (de_DE): Babel's currency format for the locale."""
    fast = _compiled(currency, locale)
    if fast is None or amount < 0:
        return format_currency(amount, currency, locale=locale)
    return fast(amount)


def format_number(amount: Decimal, locale: str) -> str:
    """``1,234.50``: two decimals with the locale's separators (the seed's ``{{ amount }}``)."""
    fast = _compiled(None, locale)
    if fast is None or amount < 0:
        return format_decimal(amount, format="#,##0.00", locale=locale)
    return fast(amount)
