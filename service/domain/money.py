"""Money as Decimal: parsed once at the edge, formatted once (with Babel) at render time."""

from __future__ import annotations

import re
from decimal import Context, Decimal, localcontext
from functools import cache, lru_cache
from typing import NamedTuple

from babel import Locale
from babel.numbers import format_currency, format_decimal, is_currency

# An amount as a bookkeeper types it: "$1,234.50", "USD 1,234.50", "1,234.50 EUR", "€99". Letters
# around the number must be an ISO 4217 code: "12k" or "12abc" is an error, never 12.
# "1 234,50 EUR" is *not* accepted (comma decimals are ambiguous).
_TEXT = re.compile(
    r"(?P<before>[A-Za-z]{3})?\s*(?P<symbol>[$€£¥₹])?\s*(?P<number>[^A-Za-z]*?)\s*(?P<after>[A-Za-z]{3})?"
)
# ASCII digits only: isdigit() and \d also take "²" and "٣", which Decimal refuses or misreads.
_NUMBER = re.compile(r"^-?\d{1,3}(,\d{3})*(\.\d+)?$|^-?\d+(\.\d+)?$", re.ASCII)
# The currencies a symbol names. "$" names none: dozens of currencies write it.
_SYMBOL_CURRENCIES = {
    "€": frozenset({"EUR"}),
    "£": frozenset({"GBP"}),
    "₹": frozenset({"INR"}),
    "¥": frozenset({"JPY", "CNY"}),
}
_EXPECTED = "expected e.g. 1234.50, $1,234.50 or 1,234.50 USD"


class MoneyParseError(ValueError):
    """A value that is not an amount of money."""


class Amount(NamedTuple):
    """An amount cell read: its value (None when empty) and the currencies its text names."""

    value: Decimal | None
    currencies: frozenset[str] = frozenset()


def read_amount(value: object) -> Amount:
    """Read an amount cell and the currencies its code or symbol names ("€99": EUR; "$5": none).

    Numbers pass through ``str``: 0.1 is Decimal('0.1'), not its binary approximation. A
    parenthesised amount is negative, as accountants write it.
    """
    if value is None:
        return Amount(None)
    named: frozenset[str] = frozenset()
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        result = Decimal(str(value))
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return Amount(None)
        negative = text.startswith("(") and text.endswith(")")
        if negative:
            text = text[1:-1].strip()
        match = _TEXT.fullmatch(text)
        core = match["number"].replace(" ", "") if match else ""
        if match is None or not _NUMBER.match(core) or (core.startswith("-") and negative):
            raise MoneyParseError(f"{value!r} is not an amount ({_EXPECTED})")
        named = _named(value, match)  # letters must be a currency code, and name one currency
        result = Decimal(core.replace(",", ""))
        if negative:
            result = -result
    else:
        raise MoneyParseError(f"{value!r} is not an amount")
    if not result.is_finite():
        raise MoneyParseError(f"{value!r} is not a finite amount")
    return Amount(result, named)


def _named(value: object, match: re.Match[str]) -> frozenset[str]:
    codes = frozenset(code.upper() for code in (match["before"], match["after"]) if code)
    for code in codes:
        if not is_known_currency(code):
            raise MoneyParseError(f"{value!r} is not an amount: {code!r} is not a currency code")
    by_symbol = _SYMBOL_CURRENCIES.get(match["symbol"] or "", frozenset())
    if len(codes) > 1 or (codes and by_symbol and not codes & by_symbol):
        raise MoneyParseError(f"{value!r} names two currencies")
    return codes or by_symbol


@lru_cache(maxsize=512)
def is_known_currency(code: str) -> bool:
    """True when the code is an ISO 4217 currency Babel knows."""
    return len(code) == 3 and code.isupper() and is_currency(code)


def _rounding(amount: Decimal) -> Context:
    """A decimal context holding every digit of ``amount`` and its cents: Babel rounds in the
    current context, whose default 28 digits a hostile cell (a 70-digit integer) overflows."""
    return Context(prec=max(28, amount.adjusted() + 8))


@cache
def babel_locale(name: str) -> Locale:
    """The Babel locale ``name``: Babel parses a name on every call it is given as text."""
    return Locale.parse(name)


def format_money(amount: Decimal, currency: str, locale: str) -> str:
    """``$1,234.50`` (en_US) or ``1.234,50 €`` (de_DE): Babel's currency format for the locale."""
    with localcontext(_rounding(amount)):
        return format_currency(amount, currency, locale=babel_locale(locale))


def format_number(amount: Decimal, locale: str) -> str:
    """``1,234.50``: two decimals with the locale's separators (the seed's ``{{ amount }}``)."""
    with localcontext(_rounding(amount)):
        return format_decimal(amount, format="#,##0.00", locale=babel_locale(locale))
