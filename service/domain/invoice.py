"""One sheet row as a value: header matching, field parsing and per-field errors."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache, partial
from typing import TypeVar

from email_validator import EmailNotValidError, validate_email

from service.domain.dates import parse_date
from service.domain.money import is_known_currency, read_amount

# The columns of DESIGN §3, in sheet order. The last three are written by the system.
INPUT_FIELDS = (
    "invoice_id",
    "client_name",
    "client_email",
    "amount",
    "currency",
    "due_date",
    "sent_date",
    "status",
    "amount_paid",
    "notes",
    "promised_date",
    "pause_until",
)
OUTPUT_FIELDS = ("last_stage_sent", "last_sent_at", "reminder_status")
_T = TypeVar("_T")


def normalize_header(header: str) -> str:
    """'Invoice ID', 'invoice-id' and 'INVOICE_ID' all become 'invoiceid'."""
    return re.sub(r"[\s_\-]+", "", header).lower()


@dataclass(frozen=True)
class ParseOptions:
    """How to read rows: defaults and the mapping of a file's own headers to our fields."""

    default_currency: str = "USD"
    date_format: str | None = None
    # our field -> the source's header, e.g. {"invoice_id": "invoiceNumber"}
    column_map: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Invoice:
    """A parsed, valid invoice row."""

    invoice_id: str
    client_name: str
    client_emails: tuple[str, ...]
    amount: Decimal
    currency: str
    due_date: dt.date
    sent_date: dt.date | None = None
    status: str = ""
    amount_paid: Decimal = Decimal(0)
    notes: str = ""
    last_stage_sent: int | None = None
    last_sent_at: dt.date | None = None
    row: int | None = None
    promised_date: dt.date | None = None  # the client promised to pay by then
    pause_until: dt.date | None = None  # no reminder before this day

    @property
    def balance(self) -> Decimal:
        """What is still owed: the amount less partial payments."""
        return self.amount - self.amount_paid


@dataclass(frozen=True)
class RowError:
    """A row that could not be parsed, with one message per bad field."""

    invoice_id: str
    fields: Mapping[str, str]
    row: int | None = None


def field_names(headers: Iterable[str], options: ParseOptions) -> dict[str, str]:
    """A source header -> our field name, for the headers that are ours."""
    index = {normalize_header(name): name for name in INPUT_FIELDS + OUTPUT_FIELDS}
    index.update({normalize_header(theirs): ours for ours, theirs in options.column_map.items()})
    names = {header: index.get(normalize_header(header)) for header in headers}
    return {header: name for header, name in names.items() if name is not None}


def header_columns(headers: Sequence[str], column_map: Mapping[str, str]) -> dict[str, int]:
    """Column index by normalised header (of a repeated header, the first); a field COLUMN_MAP
    gives a header of the source's own is found in that header's column."""
    columns: dict[str, int] = {}
    for number, header in enumerate(headers):
        if header.strip():
            columns.setdefault(normalize_header(header), number)
    for ours, theirs in column_map.items():
        if normalize_header(theirs) in columns:
            columns[normalize_header(ours)] = columns[normalize_header(theirs)]
    return columns


# C0 controls other than tab and newline have no place in an email (NUL would end a header early).
_CONTROL = {c: None for c in range(32) if c not in (9, 10)}


def _text(value: object) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float) and value.is_integer():
        # A numeric id cell arrives as 1001.0 from some sources; the id is "1001".
        return str(int(value))
    return str(value).strip().translate(_CONTROL)


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


@lru_cache(maxsize=4096)
def _normalize_email(address: str) -> str:
    # Syntax only: a deliverability check is a DNS query per row, and there may be no network.
    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"{address!r} is not a valid email address ({exc})") from None


def _emails(value: object) -> tuple[str, ...]:
    if value is not None and not isinstance(value, str):
        raise ValueError("expected one or more email addresses")
    parts = [part.strip() for part in re.split(r"[,;]", value or "") if part.strip()]
    if not parts:
        raise ValueError("is required")
    return tuple(_normalize_email(part) for part in parts)


def _stage(value: object) -> int | None:
    text = _text(value)
    if not text:
        return None
    with suppress(ArithmeticError):
        number = Decimal(text)
        if number.is_finite() and number == number.to_integral_value():
            return int(number)  # negative: a courtesy stage
    raise ValueError(f"{text!r} is not a stage number")


class _RowReader:
    """Reads a row's cells into Invoice fields, noting each bad cell (in reading order)."""

    def __init__(self, cells: Mapping[str, object], options: ParseOptions) -> None:
        self.cells = cells
        self.errors: dict[str, str] = {}
        # Read first: an amount cell that names another currency is checked against it.
        self.currency_code = _text(cells.get("currency")).upper() or options.default_currency

    def read(
        self, column: str, reader: Callable[[object], _T], *, required: bool = False
    ) -> _T | None:
        try:
            value = reader(self.cells.get(column))
            if required and (value is None or value == ""):
                raise ValueError("is required")
            return value
        except ValueError as exc:
            self.errors[column] = str(exc)
            return None

    def amount(self, value: object) -> Decimal | None:
        amount = read_amount(value)
        if amount.value is not None and amount.value < 0:
            raise ValueError("must not be negative")
        code = self.currency_code
        # Only text names a currency. "€99" on a USD row is an error: which of the two is
        # meant, only the bookkeeper knows. An unknown row currency is its own error.
        other = amount.currencies and code not in amount.currencies
        if other and isinstance(value, str) and is_known_currency(code):
            named = " or ".join(sorted(amount.currencies))
            if _blank(self.cells.get("currency")):
                why = f"the currency cell is empty and the default is {code}"
            else:
                why = f"the row's currency is {code}"
            raise ValueError(f"{value!r} is in {named}, but {why}")
        return amount.value

    def currency(self) -> str | None:
        if is_known_currency(self.currency_code):
            return self.currency_code
        self.errors["currency"] = f"{self.currency_code!r} is not an ISO 4217 currency code"
        return None


def parse_row(
    raw: Mapping[str, object],
    options: ParseOptions,
    row: int | None = None,
    names: Mapping[str, str] | None = None,
) -> Invoice | RowError:
    """Parse one row, reporting every bad field; ``names``: ``field_names`` if already known."""
    names = names or field_names(raw, options)
    # Other columns are left to the source; of a header spelled twice, the row's last one wins.
    r = _RowReader({names[key]: value for key, value in raw.items() if key in names}, options)
    date = partial(parse_date, date_format=options.date_format)
    values = {
        "invoice_id": r.read("invoice_id", _text, required=True),
        "client_name": r.read("client_name", _text, required=True),
        "client_emails": r.read("client_email", _emails),
        "amount": r.read("amount", r.amount, required=True),
        "amount_paid": r.read("amount_paid", r.amount) or Decimal(0),
        "due_date": r.read("due_date", date, required=True),
        "sent_date": r.read("sent_date", date),
        "last_sent_at": r.read("last_sent_at", date),
        "promised_date": r.read("promised_date", date),
        "pause_until": r.read("pause_until", date),
        "currency": r.currency(),
        "last_stage_sent": r.read("last_stage_sent", _stage),
        "status": _text(r.cells.get("status")),
        "notes": _text(r.cells.get("notes")),
    }
    if r.errors:
        return RowError(str(values["invoice_id"] or ""), r.errors, row)
    return Invoice(**values, row=row)  # type: ignore[arg-type]
