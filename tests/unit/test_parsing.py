"""Row parsing (DESIGN §3): headers, money, dates, emails, per-field errors."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from service.domain.dates import DateParseError, from_serial, parse_date, today_in
from service.domain.invoice import Invoice, ParseOptions, RowError, normalize_header, parse_row
from service.domain.money import (
    MoneyParseError,
    is_known_currency,
    read_amount,
)
from tests.conftest import invoice_row

OPTS = ParseOptions()


@pytest.mark.parametrize(
    "header", ["invoice_id", "Invoice ID", "INVOICE-ID", "invoice id", " Invoice_Id "]
)
def test_headers_match_ignoring_case_spaces_hyphens_underscores(header: str) -> None:
    assert normalize_header(header) == "invoiceid"
    parsed = parse_row({**invoice_row(), header: "X-9"} | {"invoice_id": "X-9"}, OPTS)
    assert isinstance(parsed, Invoice)
    assert parsed.invoice_id == "X-9"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1,234.50", "1234.50"),
        ("$1,234.50", "1234.50"),
        ("USD 1,234.50", "1234.50"),
        ("1,234.50 eur", "1234.50"),
        ("(€5)", "-5"),
        ("1234.5", "1234.5"),
        ("€99", "99"),
        ("(250.00)", "-250.00"),
        ("  12  ", "12"),
        (1234, "1234"),
        (0.1, "0.1"),
        (1234.5, "1234.5"),
    ],
)
def test_amounts_parse_to_exact_decimals(text: object, expected: str) -> None:
    assert read_amount(text).value == Decimal(expected)


@pytest.mark.parametrize(
    "text",
    [
        "abc",
        "1.234,50",
        "12..3",
        "$",
        "1,23",
        True,
        "NaN",
        "inf",
        # Letters are a currency code or an error: "12k" means 12,000 to whoever typed it.
        "12abc",
        "12k",
        "1.5 m",
        "US$100",
        "USD",
        "USD 5 EUR",
        "USD €5",
    ],
)
def test_malformed_amounts_are_errors(text: object) -> None:
    with pytest.raises(MoneyParseError):
        _ = read_amount(text).value


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("USD 1,234.50", {"USD"}),
        ("1,234.50 eur", {"EUR"}),
        ("€99", {"EUR"}),
        ("(£5)", {"GBP"}),
        ("¥100", {"JPY", "CNY"}),
        ("EUR €5", {"EUR"}),
        ("$5", set()),  # "$" is the sign of dozens of currencies: it names none
        ("5", set()),
        (5, set()),
    ],
)
def test_an_amount_names_its_currency_by_code_or_symbol(text: object, named: set[str]) -> None:
    assert read_amount(text).currencies == named


@given(
    st.sampled_from(["USD", "EUR", "GBP", "JPY", "CHF", "NZD"]),
    st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False, allow_infinity=False),
    st.booleans(),
)
def test_a_code_before_or_after_the_number_is_read_as_its_currency(
    code: str, value: Decimal, after: bool
) -> None:
    text = f"{value:,.2f} {code.lower()}" if after else f"{code} {value:,.2f}"
    assert read_amount(text).value == value
    assert read_amount(text).currencies == {code}


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=3))
def test_letters_that_are_no_currency_code_are_an_error(letters: str) -> None:
    assume(not is_known_currency(letters.upper()))
    with pytest.raises(MoneyParseError):
        _ = read_amount(f"12{letters}").value


@pytest.mark.parametrize(
    ("cells", "field", "message"),
    [
        ({"amount": "€99"}, "amount", "'€99' is in EUR, but the row's currency is USD"),
        (
            {"amount": "99 GBP", "currency": "eur"},
            "amount",
            "in GBP, but the row's currency is EUR",
        ),
        (
            {"amount": "€99", "currency": ""},
            "amount",
            "is in EUR, but the currency cell is empty and the default is USD",
        ),
        ({"amount_paid": "£5"}, "amount_paid", "'£5' is in GBP, but the row's currency is USD"),
    ],
)
def test_an_amount_in_another_currency_than_its_row_is_an_error(
    cells: dict[str, str], field: str, message: str
) -> None:
    parsed = parse_row(invoice_row(**cells), OPTS)
    assert isinstance(parsed, RowError)
    assert list(parsed.fields) == [field]
    assert message in parsed.fields[field]


def test_an_amount_in_its_rows_currency_parses() -> None:
    parsed = parse_row(invoice_row(amount="€1,200.00", currency="EUR", amount_paid="200 eur"), OPTS)
    assert isinstance(parsed, Invoice)
    assert (parsed.amount, parsed.amount_paid, parsed.currency) == (
        Decimal("1200.00"),
        Decimal("200"),
        "EUR",
    )


def test_a_currency_conflict_is_reported_in_column_order_with_other_errors() -> None:
    parsed = parse_row(invoice_row(invoice_id="", amount="€99", due_date="soon"), OPTS)
    assert isinstance(parsed, RowError)
    assert list(parsed.fields) == ["invoice_id", "amount", "due_date"]


def test_blank_amount_is_none() -> None:
    assert read_amount("").value is None
    assert read_amount(None).value is None


@given(st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False, allow_infinity=False))
def test_formatted_amount_round_trips(value: Decimal) -> None:
    assert read_amount(f"${value:,.2f}").value == value


def test_sheets_serial_numbers_count_from_1899_12_30() -> None:
    assert from_serial(45672) == dt.date(2025, 1, 15)
    assert parse_date(45672.75) == dt.date(2025, 1, 15)  # time of day ignored
    assert parse_date("45672") == dt.date(2025, 1, 15)
    assert from_serial(60) == dt.date(1900, 2, 28)  # no phantom 1900-02-29 in Sheets


def test_dates_parse_from_iso_text_and_date_values() -> None:
    assert parse_date("2025-01-15") == dt.date(2025, 1, 15)
    assert parse_date("2025-01-15T10:00:00Z") == dt.date(2025, 1, 15)
    assert parse_date(dt.datetime(2025, 1, 15, 23, 59)) == dt.date(2025, 1, 15)
    assert parse_date(dt.date(2025, 1, 15)) == dt.date(2025, 1, 15)
    assert parse_date("  ") is None


def test_explicit_format_reads_unpadded_us_dates_and_never_guesses_without_it() -> None:
    assert parse_date("1/2/2013", "%m/%d/%Y") == dt.date(2013, 1, 2)
    assert parse_date("2/29/2012", "%m/%d/%Y") == dt.date(2012, 2, 29)
    with pytest.raises(DateParseError):
        parse_date("1/2/2013")  # ambiguous without a format: an error, not a guess


@pytest.mark.parametrize("bad", ["2025-13-01", "tomorrow", "0", "-5", True, 99999999])
def test_bad_dates_are_errors(bad: object) -> None:
    with pytest.raises(DateParseError):
        parse_date(bad)


def test_today_is_the_spreadsheet_date_not_the_servers() -> None:
    instant = dt.datetime(2025, 1, 21, 23, 30, tzinfo=dt.UTC)
    assert today_in("UTC", instant) == dt.date(2025, 1, 21)
    assert today_in("Pacific/Auckland", instant) == dt.date(2025, 1, 22)
    assert today_in("America/Los_Angeles", instant) == dt.date(2025, 1, 21)
    with pytest.raises(ValueError, match="aware"):
        today_in("UTC", dt.datetime(2025, 1, 1))


def test_several_emails_split_on_comma_or_semicolon() -> None:
    parsed = parse_row(
        invoice_row(client_email="a@x.example.com; B@Y.example.com,c@z.example.com"), OPTS
    )
    assert isinstance(parsed, Invoice)
    assert parsed.client_emails == ("a@x.example.com", "B@y.example.com", "c@z.example.com")


def test_every_bad_field_is_reported_not_just_the_first() -> None:
    parsed = parse_row(
        {
            "invoice_id": "I-1",
            "client_email": "nope",
            "amount": "ten",
            "due_date": "soon",
            "currency": "XYZ",
            "last_stage_sent": "seven",
        },
        OPTS,
        row=5,
    )
    assert isinstance(parsed, RowError)
    assert parsed.row == 5
    assert set(parsed.fields) == {
        "client_name",
        "client_email",
        "amount",
        "due_date",
        "currency",
        "last_stage_sent",
    }
    assert "nope" in parsed.fields["client_email"]


def test_negative_amount_is_an_error() -> None:
    assert isinstance(parse_row(invoice_row(amount="-5"), OPTS), RowError)


def test_currency_defaults_from_settings_and_is_upper_cased() -> None:
    parsed = parse_row(invoice_row(currency=""), ParseOptions(default_currency="EUR"))
    assert isinstance(parsed, Invoice) and parsed.currency == "EUR"
    parsed = parse_row(invoice_row(currency="gbp"), OPTS)
    assert isinstance(parsed, Invoice) and parsed.currency == "GBP"


def test_numeric_cells_from_a_sheet_parse() -> None:
    parsed = parse_row(
        invoice_row(
            invoice_id=1001.0,
            amount=1234.5,
            due_date=45672,
            last_stage_sent=7.0,
            last_sent_at=45670,
        ),
        OPTS,
    )
    assert isinstance(parsed, Invoice)
    assert (parsed.invoice_id, parsed.amount, parsed.due_date, parsed.last_stage_sent) == (
        "1001",
        Decimal("1234.5"),
        dt.date(2025, 1, 15),
        7,
    )
    assert parsed.last_sent_at == dt.date(2025, 1, 13)


def test_column_map_reads_a_files_own_headers() -> None:
    opts = ParseOptions(
        column_map={"invoice_id": "invoiceNumber", "due_date": "DueDate"}, date_format="%m/%d/%Y"
    )
    raw = invoice_row()
    raw["invoiceNumber"] = raw.pop("invoice_id")
    raw["DueDate"] = "1/15/2025"
    del raw["due_date"]
    parsed = parse_row(raw, opts)
    assert isinstance(parsed, Invoice)
    assert parsed.due_date == dt.date(2025, 1, 15)
