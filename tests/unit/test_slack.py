"""The Slack alert: one message per run, only late and large drafts, failures never raise."""

from __future__ import annotations

import json
import logging
from decimal import Decimal

import pytest
import requests
import responses

from service.adapters.slack import SlackNotifier
from service.config import ConfigError, settings_from_env
from service.ports import DraftAlert

HOOK = "https://hooks.slack.com/services/T000/B000/XXXXXXXX"


def _item(invoice_id: str, stage: int, balance: str, **kw: str) -> DraftAlert:
    return DraftAlert(
        invoice_id=invoice_id,
        client_name=kw.get("client_name", "Acme Ltd"),
        stage=stage,
        balance=Decimal(balance),
        currency=kw.get("currency", "USD"),
        draft_url=kw.get("draft_url"),
    )


def _sent_text(call: responses.Call) -> str:
    assert call.request.body is not None
    payload = json.loads(call.request.body)
    return "\n".join(block["text"]["text"] for block in payload["blocks"])


@responses.activate
def test_one_message_lists_only_drafts_at_stage_28_and_above_the_threshold() -> None:
    responses.post(HOOK, body="ok")
    notifier = SlackNotifier(HOOK, min_amount={"USD": Decimal("1000"), "EUR": Decimal("900")})
    drafts = [
        _item("INV-1", 28, "1234.50", draft_url="https://mail.google.com/mail/#drafts/1"),
        _item("INV-2", 21, "5000"),  # stage too early
        _item("INV-3", 42, "999.99"),  # balance too small
        _item("INV-4", 42, "1000", currency="EUR"),
    ]
    assert notifier.notify_run(drafts) is True
    assert len(responses.calls) == 1
    text = _sent_text(responses.calls[0])
    assert "INV-1" in text
    assert "INV-4" in text
    assert "INV-2" not in text
    assert "INV-3" not in text
    assert "$1,234.50" in text
    assert "€1,000.00" in text
    assert "<https://mail.google.com/mail/#drafts/1|INV-1>" in text
    assert text.index("INV-4") < text.index("INV-1")  # the latest stage first


@responses.activate
def test_a_threshold_is_in_its_own_currency_and_yen_need_their_own() -> None:
    responses.post(HOOK, body="ok")
    dollars_only = SlackNotifier(HOOK, min_amount={"USD": Decimal("1000")})
    # ¥5,000 is about $33: a 1000 threshold set for dollars must not let it alert.
    assert dollars_only.notify_run([_item("INV-Y", 42, "5000", currency="JPY")]) is False
    assert len(responses.calls) == 0

    with_yen = SlackNotifier(HOOK, min_amount={"USD": Decimal("1000"), "JPY": Decimal("150000")})
    assert with_yen.notify_run([_item("INV-Y", 42, "5000", currency="JPY")]) is False
    assert with_yen.notify_run([_item("INV-Z", 42, "150000", currency="JPY")]) is True
    assert "INV-Z" in _sent_text(responses.calls[0])


def test_slack_min_amount_reads_a_bare_number_as_the_default_currency() -> None:
    bare = settings_from_env({"SLACK_MIN_AMOUNT": "1000", "DEFAULT_CURRENCY": "eur"})
    assert bare.slack_min_amount == {"EUR": Decimal("1000")}
    listed = settings_from_env({"SLACK_MIN_AMOUNT": "1000 USD, 900 eur, 150000 JPY"})
    assert listed.slack_min_amount == {
        "USD": Decimal("1000"), "EUR": Decimal("900"), "JPY": Decimal("150000")
    }  # fmt: skip
    assert settings_from_env({}).slack_min_amount == {}  # unset: every currency, any amount
    for bad in ("1,000 USD", "1000 DOLLARS", "a lot", "NaN", "-1"):
        with pytest.raises(ConfigError, match="SLACK_MIN_AMOUNT"):
            settings_from_env({"SLACK_MIN_AMOUNT": bad})


@responses.activate
def test_no_message_when_no_draft_qualifies() -> None:
    notifier = SlackNotifier(HOOK, min_amount={"USD": Decimal("500")})
    assert notifier.notify_run([_item("INV-1", 21, "9000"), _item("INV-2", 35, "10")]) is False
    assert notifier.notify_run([]) is False
    assert len(responses.calls) == 0


@responses.activate
def test_client_names_cannot_mention_the_channel() -> None:
    responses.post(HOOK, body="ok")
    notifier = SlackNotifier(HOOK, min_amount={})
    notifier.notify_run([_item("INV-1", 28, "5", client_name="<!channel> & co")])
    text = _sent_text(responses.calls[0])
    assert "<!channel>" not in text
    assert "&lt;!channel&gt; &amp; co" in text


@pytest.mark.parametrize(
    ("failure", "posts"),
    [
        ({"status": 404, "body": "no_service"}, 1),
        ({"status": 500, "body": "internal"}, 2),
        ({"body": requests.ConnectTimeout("connect timeout to " + HOOK)}, 2),
        ({"body": requests.ConnectionError("refused " + HOOK)}, 2),
        ({"body": requests.ReadTimeout("read timeout from " + HOOK)}, 1),  # may have posted
    ],
)
@responses.activate
def test_a_slack_failure_returns_false_and_never_raises(
    failure: dict[str, object], posts: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    responses.post(HOOK, **failure)  # type: ignore[arg-type]
    notifier = SlackNotifier(HOOK, min_amount={}, sleep=lambda _: None)
    assert notifier.notify_run([_item("INV-1", 28, "5")]) is False
    assert len(responses.calls) == posts
    assert "XXXXXXXX" not in caplog.text
    assert "slack alert" in caplog.text


@responses.activate
def test_a_rate_limited_alert_is_sent_again_after_retry_after() -> None:
    responses.post(HOOK, status=429, headers={"Retry-After": "1"})
    responses.post(HOOK, body="ok")
    sleeps: list[float] = []
    notifier = SlackNotifier(HOOK, min_amount={}, sleep=sleeps.append)

    assert notifier.notify_run([_item("INV-1", 28, "5")]) is True
    assert len(responses.calls) == 2
    assert sleeps and sleeps[0] >= 1


@responses.activate
def test_a_long_retry_after_is_not_waited_for() -> None:
    responses.post(HOOK, status=429, headers={"Retry-After": "30"})
    sleeps: list[float] = []
    notifier = SlackNotifier(HOOK, min_amount={}, sleep=sleeps.append)

    assert notifier.notify_run([_item("INV-1", 28, "5")]) is False
    assert len(responses.calls) == 1
    assert sleeps == []


def test_a_message_with_many_drafts_stays_within_slack_limits() -> None:
    notifier = SlackNotifier(HOOK, min_amount={})
    items = [_item(f"INV-{n:05}", 42, "100", client_name="C" * 80) for n in range(3000)]
    payload = notifier.message(notifier.qualifying(items))
    assert len(payload["blocks"]) <= 50
    assert all(len(b["text"]["text"]) <= 3000 for b in payload["blocks"])
    assert payload["blocks"][-1]["text"]["text"].startswith("…and ")
