"""Stripe payment links for the open balance of an overdue invoice (DESIGN §11).

Payment Links, not Checkout Sessions, whose URL expires within 24 hours while a reminder may
sit in Gmail drafts for a week. A Payment Link does not expire; ``price_data`` makes its Price
in the same call, ``completed_sessions.limit = 1`` stops it being paid twice, and the invoice
id rides in the PaymentIntent's metadata. One link per (scope, invoice, currency, balance), in
the ``payment_links`` table: a later stage reuses it, a partial payment makes a new one. Stripe
errors never leave this module: they come back as text for the row's status.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Protocol

import stripe

from service.adapters.http_retry import RetryPolicy, Transient, retry_after_seconds
from service.adapters.runs_sql import PaymentLink
from service.domain.invoice import Invoice
from service.ports import PaymentLinkResult, utc_now

log = logging.getLogger(__name__)

# Stripe's own lists (docs.stripe.com/currencies), which differ from ISO 4217/CLDR in places:
# the API reads ``unit_amount`` as whole units for these…
ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA"}
    | {"PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"}
)
# …as thousandths for these, whose last digit Stripe requires to be 0…
THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})
# …and as hundredths for ISK, which card networks take in whole krónur only since 2023.
WHOLE_UNITS_ONLY = frozenset({"ISK"})
ERROR_MAX_CHARS = 300
# A link is made while a reminder is drafted: worth a few seconds, not a minute.
STRIPE_RETRY = RetryPolicy(max_attempts=3, max_total_s=10.0, base_delay_s=0.5, max_delay_s=5.0)


class AmountNotChargeable(ValueError):
    """A balance Stripe cannot charge exactly in its currency (rounding would change it)."""


def to_minor_units(amount: Decimal, currency: str) -> int:
    """``amount`` in Stripe's integer unit for ``currency``: exact or AmountNotChargeable."""
    code = currency.upper()
    if code in ZERO_DECIMAL:
        factor, step = 1, 1
    elif code in THREE_DECIMAL:
        factor, step = 1000, 10
    elif code in WHOLE_UNITS_ONLY:
        factor, step = 100, 100
    else:
        factor, step = 100, 1
    minor = amount * factor
    if minor != minor.to_integral_value() or int(minor) % step:
        smallest = Decimal(step) / factor
        raise AmountNotChargeable(
            f"Stripe cannot charge {amount} {code} exactly (amounts in {code} go in steps of "
            f"{smallest.normalize():f})"
        )
    return int(minor)


class PaymentLinkStore(Protocol):
    """Where made links are kept (``SqlPaymentLinks``); a save returns the balance's first link."""

    def get_payment_link(
        self, scope: str, invoice_id: str, currency: str, amount_minor: int
    ) -> PaymentLink | None: ...

    def save_payment_link(self, link: PaymentLink) -> PaymentLink: ...


def idempotency_key(scope: str, invoice_id: str, currency: str, amount_minor: int) -> str:
    """The Stripe Idempotency-Key for one balance's link: a retry within 24 h gets the same one."""
    digest = hashlib.sha256(f"{scope}\0{invoice_id}\0{currency}\0{amount_minor}".encode())
    return f"invoice-collector-link-{digest.hexdigest()[:48]}"


class StripePaymentLinks:
    """The PaymentLinks port on Stripe, with the links remembered in ``store``."""

    def __init__(
        self,
        api_key: str,
        store: PaymentLinkStore,
        *,
        api_base: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else {},
            # Our policy retries, not the library; the idempotency key dedupes a repeated create.
            max_network_retries=0,
        )
        self._store = store
        self._sleep = sleep

    def link_for(self, scope: str, invoice: Invoice) -> PaymentLinkResult:
        """A link for the invoice's open balance (made once, then reused), or why there is none."""
        currency = invoice.currency.upper()
        try:
            amount_minor = to_minor_units(invoice.balance, currency)
        except AmountNotChargeable as exc:
            return PaymentLinkResult(error=str(exc))
        if amount_minor <= 0:
            return PaymentLinkResult(error="nothing is left to pay")
        stored = self._store.get_payment_link(scope, invoice.invoice_id, currency, amount_minor)
        if stored is not None:
            return PaymentLinkResult(url=stored.url)
        try:
            created = STRIPE_RETRY.run(
                lambda: self._create(scope, invoice, currency, amount_minor), sleep=self._sleep
            )
        except (stripe.StripeError, _StripeTransient) as exc:
            error = exc.error if isinstance(exc, _StripeTransient) else exc
            details = {"http_status": error.http_status, "code": error.code}
            log.warning("payment link failed", extra={"invoice_id": invoice.invoice_id, **details})
            message = error.user_message or type(error).__name__
            return PaymentLinkResult(error=f"Stripe: {message}"[:ERROR_MAX_CHARS])
        except Exception as exc:  # a link is optional: nothing here may block the draft
            log.exception("payment link failed", extra={"invoice_id": invoice.invoice_id})
            return PaymentLinkResult(error=f"Stripe: unexpected {type(exc).__name__}")
        # First writer wins: two workers that raced both use the link that was stored first.
        return PaymentLinkResult(url=self._store.save_payment_link(created).url)

    def _create(
        self, scope: str, invoice: Invoice, currency: str, amount_minor: int
    ) -> PaymentLink:
        name = f"Invoice {invoice.invoice_id}"
        metadata = {"invoice_id": invoice.invoice_id, "scope": scope[:500]}
        key = idempotency_key(scope, invoice.invoice_id, currency, amount_minor)
        try:
            link = self._client.v1.payment_links.create(
                {
                    "line_items": [
                        {
                            "price_data": {
                                "currency": currency.lower(),
                                "unit_amount": amount_minor,
                                "product_data": {"name": name},
                            },
                            "quantity": 1,
                        }
                    ],
                    "restrictions": {"completed_sessions": {"limit": 1}},
                    "metadata": metadata,
                    "payment_intent_data": {"description": name, "metadata": metadata},
                },
                {"idempotency_key": key},
            )
        except stripe.StripeError as exc:
            if _retryable(exc):
                raise _StripeTransient(exc) from exc
            raise
        return PaymentLink(
            scope=scope,
            invoice_id=invoice.invoice_id,
            currency=currency,
            amount_minor=amount_minor,
            url=link.url,
            provider_id=link.id,
            created_at=utc_now(),
        )


class _StripeTransient(Transient):
    """A Stripe error worth another attempt; ``error`` is reported if the policy gives up."""

    def __init__(self, error: stripe.StripeError) -> None:
        headers = {k.lower(): v for k, v in (error.headers or {}).items()}
        retry_after = retry_after_seconds(headers.get("retry-after"))
        super().__init__(f"Stripe: {type(error).__name__}", retry_after=retry_after)
        self.error = error


def _retryable(error: stripe.StripeError) -> bool:
    """Stripe's own rule (its Stripe-Should-Retry advice first, then 409 and 5xx), plus 429."""
    if isinstance(error, stripe.APIConnectionError):
        return bool(error.should_retry)
    advice = {k.lower(): v for k, v in (error.headers or {}).items()}.get("stripe-should-retry")
    if advice in ("true", "false"):
        return advice == "true"
    status = error.http_status or 0
    return status in (409, 429) or status >= 500
