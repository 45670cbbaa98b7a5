"""The decision of DESIGN §4, rule by rule, plus properties that must hold for any input."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.domain.decide import (
    DEFAULT_CLOSED_STATUSES,
    Action,
    Policy,
    Reason,
    decide,
    stage_for,
)
from service.domain.invoice import Invoice

TODAY = dt.date(2025, 1, 22)
POLICY = Policy()


def inv(**kw: object) -> Invoice:
    base: dict[str, object] = {
        "invoice_id": "INV-1",
        "client_name": "Ann",
        "client_emails": ("ann@client.example.com",),
        "amount": Decimal("100"),
        "currency": "USD",
        "due_date": dt.date(2025, 1, 15),
        "status": "Overdue",
    }
    base.update(kw)
    return Invoice(**base)  # type: ignore[arg-type]


def test_seed_example_due_2025_01_15_is_stage_7_on_2025_01_22() -> None:
    assert stage_for((TODAY - dt.date(2025, 1, 15)).days) == 7
    assert decide(inv(), TODAY, POLICY).stage == 7


def test_seed_example_due_2025_01_01_is_stage_21_on_2025_01_22() -> None:
    assert stage_for((TODAY - dt.date(2025, 1, 1)).days) == 21


@pytest.mark.parametrize(
    ("days", "stage"),
    [
        (0, None),
        (6, None),
        (7, 7),
        (13, 7),
        (14, 14),
        (20, 14),
        (21, 21),
        (28, 28),
        (34, 28),
        (35, 35),
        (41, 35),
        (42, 42),
        (400, 42),
    ],
)
def test_stage_is_highest_threshold_reached(days: int, stage: int | None) -> None:
    due = TODAY - dt.timedelta(days=days)
    decision = decide(inv(due_date=due), TODAY, POLICY)
    assert decision.days_overdue == days
    assert decision.stage == stage


def test_invoice_due_in_future_has_zero_days_overdue_and_is_not_due() -> None:
    decision = decide(inv(due_date=TODAY + dt.timedelta(days=5)), TODAY, POLICY)
    assert (decision.action, decision.reason, decision.days_overdue) == (
        Action.SKIP,
        Reason.NOT_DUE,
        0,
    )


@pytest.mark.parametrize(
    "status",
    [
        "Paid",
        "PAID",
        "void",
        "Cancelled",
        "canceled",
        "Written off",
        "written-off",
        "Disputed",
        "On hold",
        "on_hold",
        "Paused",
        "  paid  ",
    ],
)
def test_closed_status_is_skipped_case_insensitively(status: str) -> None:
    decision = decide(inv(status=status, due_date=dt.date(2024, 1, 1)), TODAY, POLICY)
    assert (decision.action, decision.reason) == (Action.SKIP, Reason.CLOSED_STATUS)


@pytest.mark.parametrize("status", ["Overdue", "Open", "Sent", "Unpaid", "Partially paid", ""])
def test_open_statuses_are_chased_when_late(status: str) -> None:
    assert decide(inv(status=status), TODAY, POLICY).action is Action.DRAFT


def test_zero_or_negative_balance_is_skipped() -> None:
    assert decide(inv(amount_paid=Decimal("100")), TODAY, POLICY).reason is Reason.ZERO_BALANCE
    assert decide(inv(amount_paid=Decimal("150")), TODAY, POLICY).reason is Reason.ZERO_BALANCE
    assert decide(inv(amount=Decimal(0)), TODAY, POLICY).reason is Reason.ZERO_BALANCE


def test_partial_payment_leaves_a_balance_that_is_chased() -> None:
    invoice = inv(amount_paid=Decimal("40.50"))
    assert invoice.balance == Decimal("59.50")
    assert decide(invoice, TODAY, POLICY).action is Action.DRAFT


def test_drafted_today_is_not_drafted_again() -> None:
    d = decide(inv(last_sent_at=TODAY, last_stage_sent=None), TODAY, POLICY)
    assert (d.action, d.reason) == (Action.SKIP, Reason.ALREADY_DRAFTED_TODAY)


def test_stage_already_drafted_is_skipped_and_next_stage_is_drafted() -> None:
    done = inv(last_stage_sent=7, last_sent_at=dt.date(2025, 1, 20))
    assert decide(done, TODAY, POLICY).reason is Reason.STAGE_ALREADY_DRAFTED
    later = TODAY + dt.timedelta(days=7)  # 14 days overdue
    assert decide(done, later, POLICY).action is Action.DRAFT


def test_min_gap_days_holds_back_a_reminder_that_is_too_soon() -> None:
    policy = Policy(min_gap_days=7)
    invoice = inv(
        due_date=dt.date(2024, 12, 1), last_stage_sent=35, last_sent_at=dt.date(2025, 1, 18)
    )
    assert decide(invoice, TODAY, policy).reason is Reason.TOO_SOON
    assert decide(invoice, TODAY, Policy()).action is Action.DRAFT  # 0 = off
    assert decide(invoice, dt.date(2025, 1, 25), policy).action is Action.DRAFT


def test_custom_stages_are_sorted_and_used() -> None:
    policy = Policy(stages=(30, 10))
    assert policy.stages == (10, 30)
    assert decide(inv(due_date=TODAY - dt.timedelta(days=12)), TODAY, policy).stage == 10


@pytest.mark.parametrize("stages", [(0, 7), ()])
def test_policy_rejects_a_stage_zero_or_no_stages(stages: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="never 0"):
        Policy(stages=stages)


dates = st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2040, 12, 31))


@given(due=dates, today=dates, extra=st.integers(min_value=0, max_value=500))
def test_stage_never_decreases_as_days_grow(due: dt.date, today: dt.date, extra: int) -> None:
    first = decide(inv(due_date=due), today, POLICY).stage or 0
    later = decide(inv(due_date=due), today + dt.timedelta(days=extra), POLICY).stage or 0
    assert later >= first


@given(
    status=st.sampled_from(sorted(DEFAULT_CLOSED_STATUSES)),
    case=st.sampled_from([str.upper, str.lower, str.title]),
    due=dates,
    today=dates,
    paid=st.decimals(min_value=0, max_value=1000, places=2),
)
def test_closed_status_never_drafts(
    status: str, case: object, due: dt.date, today: dt.date, paid: Decimal
) -> None:
    invoice = inv(status=case(status), due_date=due, amount_paid=paid)  # type: ignore[operator]
    assert decide(invoice, today, POLICY).action is not Action.DRAFT


@given(due=dates, today=dates, last=st.sampled_from([None, 7, 14, 21, 28, 35, 42]))
def test_second_plan_the_same_day_after_writeback_drafts_nothing(
    due: dt.date, today: dt.date, last: int | None
) -> None:
    invoice = inv(due_date=due, last_stage_sent=last)
    first = decide(invoice, today, POLICY)
    if first.action is Action.DRAFT:
        written = inv(due_date=due, last_stage_sent=first.stage, last_sent_at=today)
        assert decide(written, today, POLICY).action is Action.SKIP
