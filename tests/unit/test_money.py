"""Money formatting: Babel's, for the locale and the currency's own precision."""

from __future__ import annotations

from decimal import Decimal

import pytest

from service.domain.money import format_money, format_number


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
        ("12345678.9", "INR", "en_IN", "₹1,23,45,678.90"),  # 2-digit groups
        # A hand-written fast path once printed "$ 1'000'000.00" here (its rounding carried
        # into a new group); Babel writes the grouping its pattern for de_CH has.
        ("999999.995", "USD", "de_CH", "$\xa01000000.00"),
    ],
)
def test_known_figures(amount: str, currency: str, locale: str, expected: str) -> None:
    assert format_money(Decimal(amount), currency, locale) == expected


@pytest.mark.parametrize(
    ("amount", "locale", "expected"),
    [("1234.5", "en_US", "1,234.50"), ("1234.5", "de_DE", "1.234,50"), ("0", "en_US", "0.00")],
)
def test_numbers_have_two_decimals_and_the_locales_separators(
    amount: str, locale: str, expected: str
) -> None:
    assert format_number(Decimal(amount), locale) == expected


@pytest.mark.parametrize("digits", [23, 64, 70, 309])
def test_an_amount_of_any_length_keeps_every_digit(digits: int) -> None:
    # An integer cell of 70 digits once raised InvalidOperation: the rounding context was 64.
    text = "1" + "0" * (digits - 1)
    assert format_money(Decimal(text), "USD", "en_US").replace(",", "") == f"${text}.00"
    assert format_number(-Decimal(text), "en_US").replace(",", "") == f"-{text}.00"
