"""A Slack alert (incoming webhook) listing a run's late-stage, high-balance drafts.

One message per run, ids and amounts only: never an email body. Slack being down must never
cost a run its drafts, so every failure is logged and reported as ``False`` after at most one
brief retry (a 429, a 5xx or a failed connection).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import requests

from service.adapters.http_retry import RetryPolicy, Transient, retry_after_seconds
from service.domain.money import format_money
from service.ports import DraftAlert

logger = logging.getLogger(__name__)

MIN_STAGE = 28  # the stages worth an alert: four weeks overdue and later
# Slack's limits: 50 blocks per message, 3,000 characters per section text.
_MAX_SECTIONS = 45
_MAX_SECTION_CHARS = 2900
# An alert is worth a second try, not a stalled run.
SLACK_RETRY = RetryPolicy(max_attempts=2, max_total_s=3.0, base_delay_s=0.5, max_delay_s=2.0)


def _escape(text: str) -> str:
    # Slack reads <…> as links and mentions: a client named "<!channel>" must not ping anyone.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _amount(item: DraftAlert, locale: str) -> str:
    try:
        return format_money(item.balance, item.currency, locale)
    except (ValueError, LookupError):  # an odd currency must not lose the alert
        return f"{item.balance} {item.currency}"


class SlackNotifier:
    """Posts one message per run to a Slack incoming webhook."""

    def __init__(
        self,
        webhook_url: str,
        min_amount: Mapping[str, Decimal],
        *,
        locale: str = "en_US",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._webhook_url = webhook_url  # a credential: never logged
        # By currency: ¥5,000 is no large debt, so a threshold in dollars never applies to
        # yen. A currency with no threshold never alerts; none at all: every one alerts.
        self.min_amount = dict(min_amount)
        self.locale = locale
        self._sleep = sleep

    def qualifying(self, drafts: Sequence[DraftAlert]) -> list[DraftAlert]:
        """The drafts worth an alert, latest stage and largest balance first."""
        chosen = [d for d in drafts if d.stage >= MIN_STAGE and self._large(d)]
        return sorted(chosen, key=lambda d: (-d.stage, -d.balance, d.invoice_id))

    def _large(self, item: DraftAlert) -> bool:
        if not self.min_amount:
            return True
        threshold = self.min_amount.get(item.currency.upper())
        return threshold is not None and item.balance >= threshold

    def message(self, items: Sequence[DraftAlert]) -> dict[str, Any]:
        """The webhook payload (Block Kit, with a plain ``text`` fallback for notifications)."""
        summary = (
            f"{len(items)} overdue invoice reminder{'s' if len(items) != 1 else ''} "
            f"at stage {MIN_STAGE}+ drafted for review"
        )
        sections: list[str] = []
        for item in items:
            invoice = _escape(item.invoice_id)
            if item.draft_url:
                url = item.draft_url.replace("|", "%7C").replace(">", "%3E")
                invoice = f"<{url}|{invoice}>"
            line = (
                f"• *{invoice}* · {_escape(item.client_name)} · stage {item.stage} · "
                f"{_escape(_amount(item, self.locale))}"
            )
            if sections and len(sections[-1]) + len(line) + 1 <= _MAX_SECTION_CHARS:
                sections[-1] += "\n" + line
            elif len(sections) < _MAX_SECTIONS:
                sections.append(line[:_MAX_SECTION_CHARS])
            else:
                break
        shown = sum(s.count("\n") + 1 for s in sections)
        if shown < len(items):
            sections.append(f"…and {len(items) - shown} more")
        sections.insert(0, f"*{summary}*")
        blocks = [
            {"type": "section", "text": {"type": "mrkdwn", "text": text}} for text in sections
        ]
        return {"text": summary, "blocks": blocks}

    def notify_run(self, drafts: Sequence[DraftAlert]) -> bool:
        """Post one alert for the qualifying drafts; True only when Slack accepted a message."""
        items = self.qualifying(drafts)
        if not items:
            return False
        payload = self.message(items)

        def attempt() -> requests.Response:
            try:
                response = requests.post(self._webhook_url, json=payload, timeout=5.0)
            except requests.ConnectionError as exc:  # not a ReadTimeout: Slack may have posted
                raise Transient(type(exc).__name__) from None
            if response.status_code == 429 or response.status_code >= 500:
                wait = retry_after_seconds(response.headers.get("Retry-After"))
                raise Transient(f"Slack answered {response.status_code}", retry_after=wait)
            return response

        try:
            response = SLACK_RETRY.run(attempt, sleep=self._sleep)
        except Exception as exc:  # an alert is never worth failing the run that drafted invoices
            # Only the type: requests' messages quote the URL, and the URL is the secret.
            error = str(exc) if isinstance(exc, Transient) else type(exc).__name__
            logger.warning("slack alert failed", extra={"error": error})
            return False
        if response.status_code != 200:
            logger.warning(
                "slack alert rejected",
                extra={"status_code": response.status_code, "error": response.text[:200]},
            )
            return False
        logger.info("slack alert sent", extra={"drafts": len(items)})
        return True
