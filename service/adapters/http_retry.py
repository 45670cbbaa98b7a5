"""The one retry policy of every HTTP client (Gmail, Sheets, QuickBooks, Stripe, Slack).

Each adapter raises ``Transient`` (with the server's ``Retry-After``) for what is worth another
attempt; anything else passes straight through. The loop itself is tenacity's.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

log = logging.getLogger(__name__)
T = TypeVar("T")


class Transient(Exception):
    """A failure another attempt may cure; ``retry_after``: the wait the server asked for (s)."""

    def __init__(self, summary: str, *, retry_after: float | None = None) -> None:
        super().__init__(summary)
        self.retry_after = retry_after
        self.attempts = 0  # how many were made, set when the policy gives up


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` (delay-seconds or an HTTP date) in seconds from ``now``; None if garbled."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value.strip())
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000": a UTC time from an unknown zone (RFC 5322)
            when = when.replace(tzinfo=dt.UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


@dataclass(frozen=True)
class RetryPolicy:
    """Full-jitter exponential backoff, at most ``max_attempts`` tries within ``max_total_s``.

    Random waits spread out workers that failed together; none is shorter than the server's
    Retry-After (sooner just earns another 429), and a wait that would end past the deadline
    is not slept: the policy gives up at once rather than be refused again.
    """

    max_attempts: int = 8
    max_total_s: float = 60.0
    base_delay_s: float = 0.5
    max_delay_s: float = 32.0

    def run(
        self,
        call: Callable[[], T],
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        deadline: float | None = None,
    ) -> T:
        """``call()`` until it returns or raises a non-Transient; giving up re-raises the last
        Transient with ``attempts`` set. ``deadline`` (on ``clock``) lets calls share a budget."""
        end = clock() + self.max_total_s if deadline is None else deadline
        backoff = tenacity.wait_random_exponential(
            multiplier=self.base_delay_s, max=self.max_delay_s
        )

        def wait(state: tenacity.RetryCallState) -> float:
            failure = state.outcome.exception() if state.outcome else None
            return max(backoff(state), getattr(failure, "retry_after", None) or 0.0)

        def stop(state: tenacity.RetryCallState) -> bool:
            return state.attempt_number >= self.max_attempts or clock() + state.upcoming_sleep > end

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(Transient),
            wait=wait,
            stop=stop,
            sleep=lambda seconds: sleep(float(seconds)),
            before_sleep=tenacity.before_sleep_log(log, logging.WARNING),
            reraise=True,
        )
        try:
            return retrying(call)
        except Transient as failure:
            failure.attempts = int(retrying.statistics.get("attempt_number", 1))
            raise
