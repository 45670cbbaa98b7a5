"""Stripe payment links in reminders, against Stripe-shaped responses (``responses``)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from email import message_from_bytes, policy
from itertools import count
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
import responses

from service.adapters.runs_sql import PaymentLink
from service.adapters.stripe_links import (
    AmountNotChargeable,
    StripePaymentLinks,
    idempotency_key,
    to_minor_units,
)
from service.api.schemas import RowResultSchema
from service.config import PROJECT_ROOT
from service.domain.decide import DEFAULT_STAGES, Policy
from service.domain.invoice import Invoice, ParseOptions
from service.ports import PaymentLinkResult
from service.rendering import RenderSettings, TemplateSet
from service.usecases.drafts import DraftSettings, GenerateResult, generate_drafts
from service.usecases.plan import PlanSettings, plan
from service.usecases.report import outcome_row_dict
from tests.conftest import invoice_row
from tests.fakes import FakeLedger, FakeSink

STRIPE = "https://stripe.test"
LINKS_URL = f"{STRIPE}/v1/payment_links"
TEMPLATES = TemplateSet(PROJECT_ROOT / "templates", DEFAULT_STAGES)
PLAN = PlanSettings(Policy(), ParseOptions(), RenderSettings(sender_name="Acme"))
DRAFT = DraftSettings("Acme AR <ar@acme.example.com>", "acme.example.com", render=PLAN.render)
NOW = dt.datetime(2025, 1, 22, 9, tzinfo=dt.UTC)
SCOPE = "sheet-1"
TODAY = NOW.date()


class FakeLinkStore:
    """The payment_links table as a dict, first writer wins (like SqlPaymentLinks)."""

    def __init__(self) -> None:
        self.links: dict[tuple[str, str, str, int], PaymentLink] = {}

    def get_payment_link(
        self, scope: str, invoice_id: str, currency: str, amount_minor: int
    ) -> PaymentLink | None:
        return self.links.get((scope, invoice_id, currency.upper(), amount_minor))

    def save_payment_link(self, link: PaymentLink) -> PaymentLink:
        key = (link.scope, link.invoice_id, link.currency.upper(), link.amount_minor)
        return self.links.setdefault(key, link)


def stripe_link_reply(request: requests.PreparedRequest, ids: count[int]) -> tuple[int, Any, str]:
    """What Stripe answers to POST /v1/payment_links (trimmed to the fields we read)."""
    n = next(ids)
    form = parse_qs(str(request.body))
    body = {
        "id": f"plink_{n}",
        "object": "payment_link",
        "active": True,
        "currency": form["line_items[0][price_data][currency]"][0],
        "livemode": False,
        "metadata": {"invoice_id": form["metadata[invoice_id]"][0]},
        "url": f"https://buy.stripe.com/test_{n}",
    }
    return 200, {"Request-Id": f"req_{n}"}, json.dumps(body)


@pytest.fixture
def stripe_api() -> Any:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        ids = count(1)
        mock.add_callback(responses.POST, LINKS_URL, callback=lambda r: stripe_link_reply(r, ids))
        yield mock


def links(
    store: FakeLinkStore | None = None, sleeps: list[float] | None = None
) -> StripePaymentLinks:
    return StripePaymentLinks(
        "sk_test_123",
        store or FakeLinkStore(),
        api_base=STRIPE,
        sleep=(sleeps if sleeps is not None else []).append,
    )


def run(
    rows: list[dict[str, object]],
    ledger: FakeLedger,
    sink: FakeSink,
    payment_links: Any,
    *,
    today: dt.date = TODAY,
) -> GenerateResult:
    planned = plan(rows, today=today, settings=PLAN, templates=TEMPLATES)
    return generate_drafts(
        planned,
        scope=SCOPE,
        today=today,
        ledger=ledger,
        sink=sink,
        settings=DRAFT,
        templates=TEMPLATES,
        clock=lambda: NOW,
        payment_links=payment_links,
    )


def body_of(sink: FakeSink, index: int = -1) -> str:
    message = message_from_bytes(sink.drafts[index].raw, policy=policy.default)
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


def stripe_forms(mock: responses.RequestsMock) -> list[dict[str, list[str]]]:
    return [parse_qs(str(c.request.body)) for c in mock.calls if c.request.url == LINKS_URL]


def test_reminder_body_contains_the_payment_link(stripe_api: responses.RequestsMock) -> None:
    ledger, sink = FakeLedger(), FakeSink()
    result = run([invoice_row(amount="1250.50")], ledger, sink, links())

    assert "You can pay online here: https://buy.stripe.com/test_1" in body_of(sink)
    (form,) = stripe_forms(stripe_api)
    assert form["line_items[0][price_data][unit_amount]"] == ["125050"]
    assert form["line_items[0][price_data][currency]"] == ["usd"]
    assert form["restrictions[completed_sessions][limit]"] == ["1"]
    assert form["payment_intent_data[metadata][invoice_id]"] == ["INV-1"]
    outcome = result.outcomes[0]
    row = outcome_row_dict(outcome)
    assert row["payment_link"] == "https://buy.stripe.com/test_1"
    assert RowResultSchema().validate(row) == {}
    assert outcome.writeback is not None
    assert outcome.writeback.extra == {"payment_link": "https://buy.stripe.com/test_1"}


def test_stripe_create_carries_an_idempotency_key(stripe_api: responses.RequestsMock) -> None:
    run([invoice_row()], FakeLedger(), FakeSink(), links())

    (call,) = stripe_api.calls
    assert call.request.headers["Idempotency-Key"] == idempotency_key(SCOPE, "INV-1", "USD", 125000)
    assert "sk_test_123" in call.request.headers["Authorization"]


def test_a_second_stage_reuses_the_link(stripe_api: responses.RequestsMock) -> None:
    ledger, sink, store = FakeLedger(), FakeSink(), FakeLinkStore()
    run([invoice_row(due_date="2025-01-15")], ledger, sink, links(store))  # 7 days: stage 7
    later = dt.date(2025, 1, 29)  # 14 days: stage 14
    row = invoice_row(due_date="2025-01-15", last_stage_sent="7", last_sent_at="2025-01-22")
    result = run([row], ledger, sink, links(store), today=later)

    assert [d.key.stage for d in sink.drafts] == [7, 14]
    assert len(stripe_forms(stripe_api)) == 1
    assert "https://buy.stripe.com/test_1" in body_of(sink, 0)
    assert "https://buy.stripe.com/test_1" in body_of(sink, 1)
    assert result.outcomes[0].payment_link == "https://buy.stripe.com/test_1"


def test_a_partial_payment_makes_a_new_link(stripe_api: responses.RequestsMock) -> None:
    ledger, sink, store = FakeLedger(), FakeSink(), FakeLinkStore()
    run([invoice_row(due_date="2025-01-15")], ledger, sink, links(store))
    paid = invoice_row(
        due_date="2025-01-15", amount_paid="250", last_stage_sent="7", last_sent_at="2025-01-22"
    )
    run([paid], ledger, sink, links(store), today=dt.date(2025, 1, 29))

    amounts = [f["line_items[0][price_data][unit_amount]"] for f in stripe_forms(stripe_api)]
    assert amounts == [["125000"], ["100000"]]
    assert "https://buy.stripe.com/test_2" in body_of(sink, 1)
    assert "https://buy.stripe.com/test_1" not in body_of(sink, 1)


def test_jpy_links_are_in_whole_yen(stripe_api: responses.RequestsMock) -> None:
    run([invoice_row(amount="125000", currency="JPY")], FakeLedger(), FakeSink(), links())

    (form,) = stripe_forms(stripe_api)
    assert form["line_items[0][price_data][unit_amount]"] == ["125000"]
    assert form["line_items[0][price_data][currency]"] == ["jpy"]


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("1250.50", "USD", 125050),
        ("0.1", "EUR", 10),
        ("125000", "JPY", 125000),
        ("50000", "KRW", 50000),
        ("12.340", "KWD", 12340),
        ("1.25", "BHD", 1250),
        ("4990", "ISK", 499000),
    ],
)
def test_amounts_are_in_the_currencys_minor_units(amount: str, currency: str, minor: int) -> None:
    assert to_minor_units(Decimal(amount), currency) == minor


@pytest.mark.parametrize(
    ("amount", "currency"),
    [("100.5", "JPY"), ("12.345", "KWD"), ("10.50", "ISK"), ("1.005", "USD")],
)
def test_a_balance_stripe_cannot_charge_exactly_is_refused_not_rounded(
    amount: str, currency: str
) -> None:
    with pytest.raises(AmountNotChargeable, match=currency):
        to_minor_units(Decimal(amount), currency)


def test_stripe_outage_leaves_the_draft_and_the_row_says_why() -> None:
    ledger, sink = FakeLedger(), FakeSink()
    with responses.RequestsMock() as mock:
        mock.add(
            responses.POST,
            LINKS_URL,
            status=500,
            json={"error": {"type": "api_error", "message": "Stripe is down for maintenance."}},
        )
        result = run([invoice_row()], ledger, sink, links())

    outcome = result.outcomes[0]
    assert outcome.reason.value == "drafted" and len(sink.drafts) == 1
    assert "pay online" not in body_of(sink)
    row = outcome_row_dict(outcome)
    assert row["errors"]["payment_link"] == "Stripe: Stripe is down for maintenance."
    assert "No payment link: Stripe: Stripe is down for maintenance." in row["message"]
    assert "payment_link" not in row
    assert RowResultSchema().validate(row) == {}
    wb = outcome.writeback
    assert wb is not None and wb.extra == {}
    assert "no payment link: Stripe: Stripe is down" in wb.reminder_status


def test_stripe_unreachable_still_drafts() -> None:
    ledger, sink = FakeLedger(), FakeSink()
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, LINKS_URL, body=requests.ConnectionError("connection refused"))
        result = run([invoice_row()], ledger, sink, links())

    assert result.drafted == 1
    assert (result.outcomes[0].payment_link_error or "").startswith("Stripe: ")


def test_a_stripe_5xx_is_retried_with_the_same_idempotency_key() -> None:
    sleeps: list[float] = []
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, LINKS_URL, status=503, json={"error": {"message": "busy"}})
        ids = count(1)
        mock.add_callback(responses.POST, LINKS_URL, callback=lambda r: stripe_link_reply(r, ids))
        result = run([invoice_row()], FakeLedger(), FakeSink(), links(sleeps=sleeps))
        keys = [c.request.headers["Idempotency-Key"] for c in mock.calls]

    assert result.outcomes[0].payment_link == "https://buy.stripe.com/test_1"
    assert keys == [idempotency_key(SCOPE, "INV-1", "USD", 125000)] * 2
    assert len(sleeps) == 1


@pytest.mark.parametrize(
    ("status", "headers"),
    [(400, {}), (500, {"Stripe-Should-Retry": "false"})],
)
def test_a_stripe_refusal_is_not_retried(status: int, headers: dict[str, str]) -> None:
    sleeps: list[float] = []
    with responses.RequestsMock() as mock:
        error = {"error": {"type": "invalid_request_error", "message": "No such thing."}}
        mock.add(responses.POST, LINKS_URL, status=status, json=error, headers=headers)
        result = run([invoice_row()], FakeLedger(), FakeSink(), links(sleeps=sleeps))
        calls = len(mock.calls)

    assert (result.outcomes[0].payment_link_error or "").startswith("Stripe: ")
    assert calls == 1
    assert sleeps == []


def test_a_failed_link_is_tried_again_on_the_next_stage() -> None:
    ledger, sink, store = FakeLedger(), FakeSink(), FakeLinkStore()
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, LINKS_URL, status=503, json={"error": {"message": "down"}})
        run([invoice_row(due_date="2025-01-15")], ledger, sink, links(store))
    assert store.links == {}
    with responses.RequestsMock() as mock:
        ids = count(1)
        mock.add_callback(responses.POST, LINKS_URL, callback=lambda r: stripe_link_reply(r, ids))
        row = invoice_row(due_date="2025-01-15", last_stage_sent="7", last_sent_at="2025-01-22")
        run([row], ledger, sink, links(store), today=dt.date(2025, 1, 29))
    assert "https://buy.stripe.com/test_1" in body_of(sink, 1)


class CountingLinks:
    """A PaymentLinks fake that counts the invoices it was asked about."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def link_for(self, scope: str, invoice: Invoice) -> PaymentLinkResult:
        self.asked.append(invoice.invoice_id)
        return PaymentLinkResult(url=f"https://pay.test/{invoice.invoice_id}")


def test_links_are_made_only_for_rows_drafted_now() -> None:
    ledger, sink, counting = FakeLedger(), FakeSink(), CountingLinks()
    rows = [
        invoice_row(invoice_id="A"),
        invoice_row(invoice_id="B", status="Paid"),
        invoice_row(invoice_id="C", due_date="2025-01-20"),  # not yet at stage 7
    ]
    run(rows, ledger, sink, counting)
    run(rows, ledger, sink, counting)  # the same day again: A is a duplicate now

    assert counting.asked == ["A"]


def test_without_payment_links_nothing_changes() -> None:
    ledger, sink = FakeLedger(), FakeSink()
    result = run([invoice_row()], ledger, sink, None)

    assert "pay online" not in body_of(sink)
    wb = result.outcomes[0].writeback
    assert wb is not None and wb.extra == {}
    assert "payment_link" not in outcome_row_dict(result.outcomes[0])


def test_drafts_endpoint_merges_links_when_stripe_is_configured(
    make_settings: Any, auth: dict[str, str], stripe_api: responses.RequestsMock
) -> None:
    from service.api.app import create_app
    from service.bootstrap import build_services

    # The bookkeeper never sends the first reminder here: draft the next one on top of it.
    settings = make_settings(
        STRIPE_API_KEY="sk_test_123", STRIPE_API_BASE=STRIPE, UNSENT_POLICY="continue"
    )
    client = create_app(services=build_services(settings, clock=lambda: NOW)).test_client()
    body = {"today": "2025-01-22", "scope": "sheet-9", "dry_run": False}

    first = client.post("/v1/drafts", json={**body, "invoices": [invoice_row()]}, headers=auth)
    (row,) = first.get_json()["rows"]
    assert row["payment_link"] == "https://buy.stripe.com/test_1"
    assert "https://buy.stripe.com/test_1" in row["body"]
    later = invoice_row(last_stage_sent="7", last_sent_at="2025-01-22")
    second = client.post(
        "/v1/drafts", json={**body, "today": "2025-01-29", "invoices": [later]}, headers=auth
    )
    assert second.get_json()["rows"][0]["payment_link"] == "https://buy.stripe.com/test_1"
    assert len(stripe_forms(stripe_api)) == 1  # reused from the payment_links table


def test_payment_links_are_off_without_a_stripe_key(make_settings: Any) -> None:
    from service.bootstrap import build_services

    assert build_services(make_settings()).payment_links is None
