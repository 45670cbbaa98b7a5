"""Money as Decimal: parsed once at the edge, formatted once (with Babel) at render time."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from functools import cache, lru_cache
from typing import NamedTuple

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

# An amount as a bookkeeper types it: "$1,234.50", "USD 1,234.50", "1,234.50 EUR", "€99". Letters
# around the number must be an ISO 4217 code: "12k" or "12abc" is an error, never 12.
# "1 234,50 EUR" is *not* accepted (comma decimals are ambiguous).
_TEXT = re.compile(
    r"(?P<before>[A-Za-z]{3})?\s*(?P<symbol>[$€£¥₹])?\s*(?P<number>[^A-Za-z]*?)\s*(?P<after>[A-Za-z]{3})?"
)
# ASCII digits only: str.isdigit() and a str pattern's \d also take "²" and "٣", which Decimal
# refuses or reads as digits nobody typed into a ledger.
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


def parse_amount(value: object) -> Decimal | None:
    """Parse an amount cell into a Decimal; ``None`` for an empty cell (``read_amount``'s
    value)."""
    return read_amount(value).value


def read_amount(value: object) -> Amount:
    """Read an amount cell: a Decimal (``None`` for an empty cell) and the currencies it names
    by code or symbol ("€99": EUR; none for "$5" or a plain number).

    Numbers pass through ``str`` so a float such as 0.1 becomes Decimal('0.1'), not its binary
    approximation. Text may carry a currency symbol or ISO code and thousands separators; a
    parenthesised amount is negative, as accountants write it.
    """
    if type(value) is str and value.isascii() and value.replace(".", "", 1).isdigit():
        return Amount(Decimal(value))  # the common case: plain digits with at most one point
    if value is None:
        return Amount(None)
    if isinstance(value, bool):
        raise MoneyParseError(f"{value!r} is not an amount")
    named: frozenset[str] = frozenset()
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | float):
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


Formatter = Callable[[Decimal], str]

# Grouped, fixed-point digits by precision. A literal format spec is read once, when the
# f-string compiles: half the cost of format(amount, spec) with a spec built per call.
_GROUPED: dict[int, Formatter] = {
    0: lambda amount: f"{amount:,.0f}",
    2: lambda amount: f"{amount:,.2f}",
    3: lambda amount: f"{amount:,.3f}",
}


def _grouped(digits: int) -> Formatter:
    spec = f",.{digits}f"
    return _GROUPED.get(digits) or (lambda amount: format(amount, spec))


class _Pattern(NamedTuple):
    prefix: str
    grouped: Formatter
    suffix: str


def _fast(currency: str | None, locale: str) -> _Pattern | None:
    """A fast equivalent of Babel's format for this locale, or None to use Babel itself.

    Babel re-reads the locale's pattern on every call (~16 µs), and a plan formats amounts on
    every row. Symbols, separators, digits and the prefix/suffix all come from Babel's own
    locale data; tests compare the two across locales, currencies and amounts. Patterns this
    shortcut does not model (non-3-digit grouping such as en_IN, exotic digits) use Babel.
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
    grouped = _grouped(digits)
    if (get_group_symbol(locale), get_decimal_symbol(locale)) != (",", "."):
        swap = str.maketrans({",": get_group_symbol(locale), ".": get_decimal_symbol(locale)})
        plain = grouped

        def grouped(amount: Decimal) -> str:
            return plain(amount).translate(swap)

    return _Pattern(prefix, grouped, suffix)


@cache
def money_formatter(currency: str | None, locale: str) -> Formatter:
    """``format_money`` for one currency and locale (``format_number`` for ``None``).

    Looked up once, it formats many amounts: a plan formats one or two on every row.
    """
    fast = _fast(currency, locale)
    if currency is None:

        def babel(amount: Decimal) -> str:
            return format_decimal(amount, format="#,##0.00", locale=locale)

    else:

        def babel(amount: Decimal) -> str:
            return format_currency(amount, currency, locale=locale)

    if fast is None:
        return babel
    prefix, grouped, suffix = fast

    def formatter(amount: Decimal) -> str:
        if amount.is_signed():  # Babel puts the sign where the locale's pattern says
            return babel(amount)
        return prefix + grouped(amount) + suffix

    return formatter


@cache
def amount_texts(currency: str, locale: str) -> Callable[[Decimal], tuple[str, str]]:
    """``(format_number(a), format_money(a))`` for one currency and locale.

    A template sees an amount both ways; where the currency has two decimals, as the number
    does, the money text is the number's with the currency's prefix and suffix.
    """
    number, money = money_formatter(None, locale), money_formatter(currency, locale)
    fast = _fast(currency, locale)
    if fast is None or _fast(None, locale) is None or get_currency_precision(currency) != 2:
        return lambda amount: (number(amount), money(amount))
    prefix, _, suffix = fast

    def texts(amount: Decimal) -> tuple[str, str]:
        text = number(amount)
        if amount.is_signed():
            return text, money(amount)
        return text, prefix + text + suffix

    return texts


def format_money(amount: Decimal, currency: str, locale: str) -> str:
    """``$1,234.50`` (en_US) or ``1.234,50 €`` (de_DE): Babel's currency format for the locale."""
    return money_formatter(currency, locale)(amount)


def format_number(amount: Decimal, locale: str) -> str:
    """``1,234.50``: two decimals with the locale's separators (the seed's ``{{ amount }}``)."""
    return money_formatter(None, locale)(amount)
