"""Collections policy (issue 18): promises and pauses, business days, courtesy reminders before
due, catch-up. Each rule is a property over invoices replayed day by day, as the daily run
sees them: what is drafted is written back, and the next day decides on that."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable
from decimal import Decimal

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.calendar import BusinessCalendar, weekend_days
from service.domain.decide import Action, CatchUp, Policy, Reason, decide, stage_for
from service.domain.invoice import Invoice

DUE = dt.date(2025, 11, 3)
US = BusinessCalendar(holidays=holidays.country_holidays("US", years=range(2024, 2028)))


def invoice(**kw: object) -> Invoice:
    base: dict[str, object] = {
        "invoice_id": "INV-1",
        "client_name": "Ann",
        "client_emails": ("ann@client.example.com",),
        "amount": Decimal("100"),
        "currency": "USD",
        "due_date": DUE,
    }
    return Invoice(**{**base, **kw})  # type: ignore[arg-type]


def replay(inv: Invoice, days: Iterable[dt.date], policy: Policy) -> list[tuple[dt.date, int]]:
    """The (day, stage) of each draft over runs on ``days``, writing back as a run does."""
    drafted = []
    for day in days:
        decision = decide(inv, day, policy)
        if decision.action is Action.DRAFT:
            assert decision.stage is not None
            drafted.append((day, decision.stage))
            inv = dataclasses.replace(inv, last_stage_sent=decision.stage, last_sent_at=day)
    return drafted


def every_day(start: dt.date, count: int) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range(count)]


offsets = st.integers(-10, 80)
days_run = st.lists(st.booleans(), min_size=90, max_size=90)  # which of 90 days have a run


@given(promise=offsets, grace=st.integers(0, 5), pause=offsets, runs=days_run)
def test_nothing_is_drafted_before_a_promise_or_a_pause_ends(
    promise: int, grace: int, pause: int, runs: list[bool]
) -> None:
    promised, paused = DUE + dt.timedelta(promise), DUE + dt.timedelta(pause)
    inv = invoice(promised_date=promised, pause_until=paused)
    policy = Policy(promise_grace_days=grace)
    days = [d for d, ran in zip(every_day(DUE - dt.timedelta(5), 90), runs, strict=True) if ran]
    for day, _ in replay(inv, days, policy):
        assert day >= promised + dt.timedelta(grace) and day >= paused


def test_a_broken_promise_resumes_with_the_next_stage() -> None:
    inv = invoice(promised_date=dt.date(2025, 11, 30), last_stage_sent=14)
    policy = Policy()
    assert decide(inv, dt.date(2025, 11, 28), policy).reason is Reason.PROMISED
    assert decide(inv, dt.date(2025, 11, 30), policy).reason is Reason.PROMISED  # grace: 1 day
    after = decide(inv, dt.date(2025, 12, 1), policy)
    assert (after.action, after.stage) == (Action.DRAFT, 28)


@settings(max_examples=60)
@given(start=st.dates(dt.date(2024, 1, 1), dt.date(2026, 12, 1)), catch_up=st.sampled_from(CatchUp))
def test_every_drafted_day_is_a_business_day_and_no_stage_is_lost(
    start: dt.date, catch_up: CatchUp
) -> None:
    policy = Policy(calendar=US, catch_up=catch_up)
    off = replay(invoice(due_date=start), every_day(start, 60), Policy(catch_up=catch_up))
    on = replay(invoice(due_date=start), every_day(start, 60), policy)
    assert all(US.is_business_day(day) for day, _ in on)
    # Each stage drafted without business days is drafted with them: on the first business
    # day on or after the day it was reached, once.
    assert [stage for _, stage in on] == [stage for _, stage in off]
    for (reached, _), (drafted, _) in zip(off, on, strict=True):
        assert drafted == US.next_business_day(reached)


def test_a_stage_reached_on_thanksgiving_is_drafted_the_next_business_day() -> None:
    due = dt.date(2025, 11, 13)  # + 14 days = Thanksgiving, Thursday 27 November
    policy = Policy(calendar=US)
    on_the_day = decide(invoice(due_date=due, last_stage_sent=7), dt.date(2025, 11, 27), policy)
    assert on_the_day.reason is Reason.NOT_BUSINESS_DAY
    assert on_the_day.draft_on == dt.date(2025, 11, 28)
    drafted = replay(invoice(due_date=due, last_stage_sent=7), every_day(due, 20), policy)
    assert drafted[0] == (dt.date(2025, 11, 28), 14)


@given(runs=days_run, stages=st.sets(st.integers(1, 60), min_size=1, max_size=8))
def test_catch_up_next_drafts_consecutive_stages_whatever_days_are_skipped(
    runs: list[bool], stages: set[int]
) -> None:
    policy = Policy(stages=tuple(stages), catch_up=CatchUp.NEXT)
    days = [d for d, ran in zip(every_day(DUE, 90), runs, strict=True) if ran]
    drafted = [stage for _, stage in replay(invoice(), days, policy)]
    assert drafted == sorted(stages)[: len(drafted)]


def test_catch_up_next_says_so_and_latest_jumps() -> None:
    inv = invoice(last_stage_sent=7, last_sent_at=DUE + dt.timedelta(7))
    week_later = DUE + dt.timedelta(30)
    caught = decide(inv, week_later, Policy(catch_up=CatchUp.NEXT))
    assert (caught.stage, caught.reason) == (14, Reason.CATCHING_UP)
    latest = decide(inv, week_later, Policy())
    assert (latest.stage, latest.reason) == (28, Reason.DUE)


def test_a_courtesy_stage_is_drafted_before_due_and_never_after() -> None:
    policy = Policy(stages=(-3, 7, 14))
    drafted = replay(invoice(), every_day(DUE - dt.timedelta(10), 20), policy)
    assert drafted == [(DUE - dt.timedelta(3), -3), (DUE + dt.timedelta(7), 7)]
    # First seen on its due date: too late for "due in 3 days", not yet late.
    assert decide(invoice(), DUE, policy).reason is Reason.NOT_DUE
    assert stage_for(-1, (-3, 7)) == -3 and stage_for(0, (-3, 7)) is None


def test_weekend_names_read_as_weekdays() -> None:
    assert weekend_days("sat,sun") == frozenset({5, 6})
    assert weekend_days("Fri, Sat") == frozenset({4, 5})
    assert weekend_days("") == frozenset()
    with pytest.raises(ValueError, match="unknown"):
        weekend_days("sat,caturday")
