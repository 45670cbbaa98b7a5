"""One sheet row as a value: header matching, field parsing and per-field errors."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

from service.domain.dates import DateParseError, parse_date
from service.domain.money import MoneyParseError, is_known_currency, parse_amount

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
)
OUTPUT_FIELDS = ("last_stage_sent", "last_sent_at", "reminder_status")
_EMAIL_SPLIT = re.compile(r"[,;]")


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

    def header_index(self) -> dict[str, str]:
        """Normalised source header -> our field name."""
        index = {normalize_header(name): name for name in INPUT_FIELDS + OUTPUT_FIELDS}
        for ours, theirs in self.column_map.items():
            index[normalize_header(theirs)] = ours
        return index


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

    @property
    def message(self) -> str:
        """The field messages as one sentence."""
        return "; ".join(f"{name}: {text}" for name, text in self.fields.items())


class HeaderIndex(dict[str, str | None]):
    """A row key -> our field name (None for other columns), memoised per distinct key.

    Every row of a sheet repeats the same headers, so each is normalised once per request.
    """

    def __init__(self, options: ParseOptions) -> None:
        super().__init__()
        self._normalised = options.header_index()

    def __missing__(self, key: str) -> str | None:
        name = self._normalised.get(normalize_header(key))
        self[key] = name
        return name


def map_row(raw: Mapping[str, object], index: HeaderIndex) -> dict[str, object]:
    """Rename a row's keys to our field names; unknown columns are left to the source."""
    mapped: dict[str, object] = {}
    for key, value in raw.items():
        name = index[key]
        if name is not None:
            mapped[name] = value
    return mapped


@lru_cache(maxsize=65536)
def _normalize_email(address: str) -> str:
    # Syntax only: a deliverability check would be a DNS query per row, and there is no network
    # guarantee where this runs. Cached: a ledger repeats the same clients on many rows.
    return validate_email(address, check_deliverability=False).normalized


def parse_emails(value: object) -> tuple[str, ...]:
    """One or several addresses separated by ',' or ';'."""
    if not isinstance(value, str):
        raise ValueError("expected one or more email addresses")
    parts = [part.strip() for part in _EMAIL_SPLIT.split(value) if part.strip()]
    if not parts:
        raise ValueError("is required")
    out = []
    for part in parts:
        try:
            out.append(_normalize_email(part))
        except EmailNotValidError as exc:
            raise ValueError(f"{part!r} is not a valid email address ({exc})") from None
    return tuple(out)


def _text(value: object) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float) and value.is_integer():
        # A numeric id cell arrives as 1001.0 from some sources; the id is "1001".
        return str(int(value))
    text = str(value).strip()
    return text.translate(_CONTROL) if not text.isprintable() else text


# C0 control characters other than tab and newline have no place in an email (NUL also
# separates subject from body while rendering).
_CONTROL = {c: None for c in range(32) if c not in (9, 10)}


def _stage(value: object) -> int | None:
    if type(value) is int:
        return value if value >= 0 else _bad_stage(value)
    text = _text(value)
    if not text:
        return None
    try:
        number = Decimal(text)
    except ArithmeticError:
        raise ValueError(f"{text!r} is not a stage number") from None
    if number != number.to_integral_value() or number < 0:
        _bad_stage(text)
    return int(number)


def _bad_stage(value: object) -> int:
    raise ValueError(f"{value!r} is not a stage number")


def parse_row(
    raw: Mapping[str, object],
    options: ParseOptions,
    row: int | None = None,
    index: HeaderIndex | None = None,
) -> Invoice | RowError:
    """Parse one row; every bad field is reported, not just the first."""
    values = map_row(raw, index if index is not None else HeaderIndex(options))
    get = values.get
    errors: dict[str, str] = {}
    invoice_id = _text(get("invoice_id"))
    client_name = _text(get("client_name"))
    if not invoice_id:
        errors["invoice_id"] = "is required"
    if not client_name:
        errors["client_name"] = "is required"

    emails: tuple[str, ...] = ()
    raw_email = get("client_email")
    if _blank(raw_email):
        errors["client_email"] = "is required"
    else:
        try:
            emails = parse_emails(raw_email)
        except ValueError as exc:
            errors["client_email"] = str(exc)

    def money(name: str) -> Decimal | None:
        try:
            amount = parse_amount(get(name))
        except MoneyParseError as exc:
            errors[name] = str(exc)
            return None
        if amount is not None and amount < 0:
            errors[name] = "must not be negative"
        return amount

    def date(name: str) -> dt.date | None:
        try:
            return parse_date(get(name), options.date_format)
        except DateParseError as exc:
            errors[name] = str(exc)
            return None

    amount = money("amount")
    if amount is None and "amount" not in errors:
        errors["amount"] = "is required"
    amount_paid = money("amount_paid")
    due_date = date("due_date")
    if due_date is None and "due_date" not in errors:
        errors["due_date"] = "is required"
    sent_date = date("sent_date")
    last_sent_at = date("last_sent_at")

    currency = _text(get("currency")).upper() or options.default_currency
    if not is_known_currency(currency):
        errors["currency"] = f"{currency!r} is not an ISO 4217 currency code"

    last_stage_sent: int | None = None
    try:
        last_stage_sent = _stage(get("last_stage_sent"))
    except ValueError as exc:
        errors["last_stage_sent"] = str(exc)

    if errors or amount is None or due_date is None:
        return RowError(invoice_id=invoice_id, fields=errors, row=row)
    return Invoice(
        invoice_id=invoice_id,
        client_name=client_name,
        client_emails=emails,
        amount=amount,
        currency=currency,
        due_date=due_date,
        sent_date=sent_date,
        status=_text(get("status")),
        amount_paid=amount_paid or _ZERO,
        notes=_text(get("notes")),
        last_stage_sent=last_stage_sent,
        last_sent_at=last_sent_at,
        row=row,
    )


_ZERO = Decimal(0)


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())
