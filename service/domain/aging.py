"""How old is what we are owed: aging buckets, the largest debtors and DSO, per currency."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from service.domain.invoice import Invoice

# Days past due: (label, last day or None for no end); each starts the day after the last one.
BUCKETS = (("current", 0), ("1-30", 30), ("31-60", 60), ("61-90", 90), ("90+", None))
DSO_DAYS = 90
_ZERO = Decimal(0)


def bucket_of(days_past_due: int) -> str:
    """The aging bucket of an invoice ``days_past_due`` (0 or less: current)."""
    return next(label for label, last in BUCKETS if last is None or days_past_due <= last)


@dataclass
class CurrencyAging:
    """One currency's open balances by bucket, its largest overdue clients and its DSO."""

    currency: str
    buckets: dict[str, Decimal] = field(default_factory=lambda: {b[0]: _ZERO for b in BUCKETS})
    open_balance: Decimal = _ZERO
    overdue_by_client: dict[str, Decimal] = field(default_factory=dict)
    invoiced_in_period: Decimal = _ZERO
    dated: bool = False  # some invoice of this currency has a sent date

    @property
    def dso(self) -> Decimal | None:
        """Open receivables ÷ amounts invoiced in the last 90 days × 90; None without data."""
        if not self.dated or not self.invoiced_in_period:
            return None
        return (self.open_balance / self.invoiced_in_period * DSO_DAYS).quantize(Decimal("0.1"))

    def top_clients(self) -> list[tuple[str, Decimal]]:
        """The five clients owing the most overdue, largest first."""
        return sorted(self.overdue_by_client.items(), key=lambda kv: (-kv[1], kv[0]))[:5]


def aging(invoices: Iterable[tuple[Invoice, bool]], today: dt.date) -> dict[str, CurrencyAging]:
    """Aging per currency of ``(invoice, is_open)`` pairs (open: chased, with a balance); every
    invoice sent in the last 90 days counts toward DSO's denominator, paid or not."""
    out: dict[str, CurrencyAging] = {}
    start = today - dt.timedelta(days=DSO_DAYS)
    for invoice, is_open in invoices:
        a = out.setdefault(invoice.currency, CurrencyAging(invoice.currency))
        if invoice.sent_date is not None:
            a.dated = True
            if start < invoice.sent_date <= today:
                a.invoiced_in_period += invoice.amount
        if not is_open or invoice.balance <= 0:
            continue
        days = (today - invoice.due_date).days
        a.buckets[bucket_of(days)] += invoice.balance
        a.open_balance += invoice.balance
        if days > 0:
            client = invoice.client_name
            a.overdue_by_client[client] = a.overdue_by_client.get(client, _ZERO) + invoice.balance
    return dict(sorted(out.items()))
