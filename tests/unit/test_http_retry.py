"""The one retry policy and Retry-After parser every HTTP adapter shares."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable

import pytest

from service.adapters.http_retry import RetryPolicy, Transient, retry_after_seconds

NOW = 1_750_000_000.0  # a wall-clock instant for HTTP dates


class FakeTime:
    """A clock that only moves when the policy sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def failing(times: int, exc: Callable[[], Exception], result: str = "ok") -> Callable[[], str]:
    """A call that raises ``exc()`` ``times`` times, then returns ``result``; counts calls."""
    calls = [0]

    def call() -> str:
        calls[0] += 1
        if calls[0] <= times:
            raise exc()
        return result

    call.calls = calls  # type: ignore[attr-defined]
    return call


def run(policy: RetryPolicy, call: Callable[[], str], fake: FakeTime) -> str:
    return policy.run(call, sleep=fake.sleep, clock=fake.clock)


# ---------------------------------------------------------------------------------------------
# Retry-After
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "seconds"), [("120", 120.0), (" 7 ", 7.0), ("0", 0.0)])
def test_retry_after_in_seconds(value: str, seconds: float) -> None:
    assert retry_after_seconds(value) == seconds


def test_retry_after_as_an_http_date_counts_from_now() -> None:
    value = email.utils.formatdate(NOW + 90, usegmt=True)  # "Sun, 15 Jun 2025 ... GMT"
    assert retry_after_seconds(value, now=NOW) == pytest.approx(90)


def test_retry_after_as_a_date_without_a_zone_is_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")  # a naive datetime would be read as local
    time.tzset()
    try:
        value = email.utils.formatdate(NOW + 30).replace("+0000", "-0000")
        assert retry_after_seconds(value, now=NOW) == pytest.approx(30)
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize("value", ["-5", email.utils.formatdate(NOW - 3600, usegmt=True)])
def test_retry_after_in_the_past_means_now(value: str) -> None:
    assert retry_after_seconds(value, now=NOW) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "nan", "inf", "Mon, 99 Foo 2025"])
def test_garbled_retry_after_is_ignored(value: str | None) -> None:
    assert retry_after_seconds(value, now=NOW) is None


# ---------------------------------------------------------------------------------------------
# What is retried
# ---------------------------------------------------------------------------------------------
def test_a_transient_failure_is_retried_until_it_succeeds() -> None:
    fake = FakeTime()
    call = failing(2, lambda: Transient("503"))

    assert run(RetryPolicy(), call, fake) == "ok"
    assert call.calls[0] == 3  # type: ignore[attr-defined]
    assert len(fake.sleeps) == 2


def test_any_other_failure_is_raised_at_once() -> None:
    fake = FakeTime()
    call = failing(1, lambda: ValueError("400 bad request"))

    with pytest.raises(ValueError, match="400"):
        run(RetryPolicy(), call, fake)
    assert call.calls[0] == 1  # type: ignore[attr-defined]
    assert fake.sleeps == []


def test_after_max_attempts_the_last_failure_is_raised_with_the_count() -> None:
    fake = FakeTime()
    call = failing(99, lambda: Transient("still 503"))

    with pytest.raises(Transient, match="still 503") as caught:
        run(RetryPolicy(max_attempts=4), call, fake)
    assert caught.value.attempts == 4
    assert call.calls[0] == 4  # type: ignore[attr-defined]
    assert len(fake.sleeps) == 3


# ---------------------------------------------------------------------------------------------
# How long it waits
# ---------------------------------------------------------------------------------------------
def test_jitter_stays_between_zero_and_the_exponential_ceiling() -> None:
    policy = RetryPolicy(max_attempts=8, max_total_s=1e9, base_delay_s=0.5, max_delay_s=4.0)
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    waits: list[list[float]] = [[] for _ in ceilings]
    for _ in range(200):
        fake = FakeTime()
        with pytest.raises(Transient):
            run(policy, failing(99, lambda: Transient("503")), fake)
        for n, wait in enumerate(fake.sleeps):
            waits[n].append(wait)

    for ceiling, seen in zip(ceilings, waits, strict=True):
        assert all(0 <= wait <= ceiling for wait in seen)
        assert max(seen) > ceiling / 2  # jittered across the range, not pinned at zero
        assert len(set(seen)) > 100


def test_retry_after_is_a_floor_even_above_the_backoff_cap() -> None:
    fake = FakeTime()
    policy = RetryPolicy(base_delay_s=0.01, max_delay_s=0.05)

    run(policy, failing(1, lambda: Transient("429", retry_after=7)), fake)

    assert fake.sleeps == [7]


def test_the_deadline_bounds_the_total_sleep() -> None:
    policy = RetryPolicy(max_attempts=1000, max_total_s=10, base_delay_s=1, max_delay_s=4)
    for _ in range(50):
        fake = FakeTime()
        with pytest.raises(Transient):
            run(policy, failing(10_000, lambda: Transient("503")), fake)
        assert sum(fake.sleeps) <= 10
        assert len(fake.sleeps) >= 3  # it did keep trying until the budget ran out


def test_a_retry_after_past_the_deadline_gives_up_without_sleeping() -> None:
    fake = FakeTime()
    call = failing(1, lambda: Transient("429", retry_after=61))

    with pytest.raises(Transient) as caught:
        run(RetryPolicy(max_total_s=60), call, fake)
    assert fake.sleeps == []
    assert caught.value.attempts == 1


def test_a_shared_deadline_counts_time_already_spent() -> None:
    fake = FakeTime()
    policy = RetryPolicy(max_total_s=60)
    deadline = fake.clock() + 5
    fake.now = 3.0  # an earlier call used 3 s of the budget

    with pytest.raises(Transient):
        policy.run(
            failing(1, lambda: Transient("429", retry_after=4)),
            sleep=fake.sleep,
            clock=fake.clock,
            deadline=deadline,
        )
    assert fake.sleeps == []
