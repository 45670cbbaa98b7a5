"""What a bookkeeper should do about a row that cannot be chased, in plain words."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# What each field holds, as the fix names it.
_WHAT = {
    "invoice_id": "the invoice ID",
    "client_name": "the client's name",
    "client_email": "the client's email",
    "amount": "the amount",
    "amount_paid": "the amount paid",
    "currency": "the currency",
    "due_date": "the due date",
    "sent_date": "the date the invoice was sent",
    "last_sent_at": "the date of the last reminder",
    "promised_date": "the date the client promised to pay",
    "pause_until": "the date reminders resume",
    "last_stage_sent": "the last stage sent",
}
_DATES = {"due_date", "sent_date", "last_sent_at", "promised_date", "pause_until"}


def _one(field: str, message: str, column: str) -> str:
    what = _WHAT.get(field, field)
    where = f'in the "{column}" column'
    if message == "is required":
        return f"Add {what} {where}"
    if field in _DATES:
        return f"Write {what} {where} as a date, e.g. 2025-01-15"
    if field == "client_email":
        return f"Correct the email address {where}: name@example.com, several separated by ;"
    if field in ("amount", "amount_paid"):
        if "currency" in message:
            return f"Make {what} {where} and the currency column name the same currency"
        if "negative" in message:
            return f"Write {what} {where} without a minus sign (a credit note is not chased)"
        return f"Write {what} {where} as a number, e.g. 1234.50"
    if field == "currency":
        return f"Use a three-letter currency code such as USD or EUR {where}"
    if field == "last_stage_sent":
        return f"Write {what} {where} as a whole number such as 7, or leave it empty"
    return f"Correct {what} {where}: {message}"


def fix_for(errors: Mapping[str, str], columns: Mapping[str, str]) -> str:
    """The fix for a row's field errors; ``columns`` names each field's column in the sheet."""
    return "; ".join(_one(f, m, columns.get(f, f)) for f, m in errors.items()) + "."


def fix_for_duplicate(invoice_id: str, rows: Sequence[int | None]) -> str:
    """The fix for an invoice ID on several rows."""
    numbers = [str(r) for r in rows if r is not None]
    where = f"rows {', '.join(numbers[:-1])} and {numbers[-1]}" if len(numbers) > 1 else "rows"
    return f"{invoice_id} appears on {where}: keep one, or give each invoice its own ID."
