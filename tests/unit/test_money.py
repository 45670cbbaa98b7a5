"""Money formatting: the fast path must print exactly what Babel prints."""

from __future__ import annotations

from decimal import Decimal

import pytest
from babel.numbers import format_currency, format_decimal
from hypothesis import given
from hypothesis import strategies as st

from service.domain.money import amount_texts, format_money, format_number, money_formatter

LOCALES = ["en_US", "en_GB", "de_DE", "de_CH", "fr_FR", "fr_CH", "es_ES", "pt_BR", "nl_NL",
           "sv_SE", "ja_JP", "en_IN", "hi_IN", "ar_EG", "fa_IR", "en_NZ"]  # fmt: skip
# Precisions 0 (JPY), 2, 3 (KWD, BHD) and 4 (CLF).
CURRENCIES = ["USD", "EUR", "GBP", "CHF", "JPY", "INR", "NZD", "KWD", "BHD", "CLF", "SEK"]

amounts = st.decimals(
    min_value=Decimal("-1e12"), max_value=Decimal("1e12"), places=4, allow_nan=False
)


@given(amount=amounts, currency=st.sampled_from(CURRENCIES), locale=st.sampled_from(LOCALES))
def test_money_is_printed_as_babel_prints_it(amount: Decimal, currency: str, locale: str) -> None:
    expected = format_currency(amount, currency, locale=locale)
    assert format_money(amount, currency, locale) == expected


@given(amount=amounts, locale=st.sampled_from(LOCALES))
def test_numbers_are_printed_as_babel_prints_them(amount: Decimal, locale: str) -> None:
    expected = format_decimal(amount, format="#,##0.00", locale=locale)
    assert format_number(amount, locale) == expected


@given(amount=amounts, currency=st.sampled_from(CURRENCIES), locale=st.sampled_from(LOCALES))
def test_both_texts_of_an_amount_at_once(amount: Decimal, currency: str, locale: str) -> None:
    number, money = amount_texts(currency, locale)(amount)
    assert number == format_number(amount, locale)
    assert money == format_money(amount, currency, locale)


@pytest.mark.parametrize(
    ("amount", "currency", "locale", "expected"),
    [
        ("1234.5", "USD", "en_US", "$1,234.50"),
        ("1234.5", "EUR", "de_DE", "1.234,50\xa0€"),
        ("0.125", "USD", "en_US", "$0.12"),  # half to even, as Babel rounds
        ("0.135", "USD", "en_US", "$0.14"),
        ("185000", "JPY", "en_US", "¥185,000"),
        ("1234.5678", "KWD", "en_US", "KWD1,234.568"),
        ("-5", "USD", "en_US", "-$5.00"),
        ("-0", "USD", "en_US", "-$0.00"),  # as Babel writes a negative zero
        ("12345678.9", "INR", "en_IN", "₹1,23,45,678.90"),  # 2-digit groups: Babel's own path
    ],
)
def test_known_figures(amount: str, currency: str, locale: str, expected: str) -> None:
    assert format_money(Decimal(amount), currency, locale) == expected


def test_a_formatter_is_built_once_per_currency_and_locale() -> None:
    assert money_formatter("USD", "en_US") is money_formatter("USD", "en_US")
    assert money_formatter("USD", "en_US") is not money_formatter("EUR", "en_US")
