"""run_sheet(): the headless run over fakes — one read, drafts at most once, one write-back."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
from decimal import Decimal
from email.message import EmailMessage
from typing import Any

import pytest
import responses

from service.adapters.slack import SlackNotifier
from service.bootstrap import build_services
from service.config import Settings
from service.usecases.run import RunReport, RunSettings, RunStatus, Window, run_sheet, within_window
from tests.conftest import invoice_row
from tests.fakes import FakeLedger, FakeNotifier, FakeSink, FakeSource, transient

pytestmark = pytest.mark.timeout(30)

TODAY = dt.date(2026, 11, 24)
NOON_UTC = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
HOOK = "https://hooks.slack.com/services/T000/B000/XXXXXXXX"


def rows() -> list[dict[str, object]]:
    return [
        invoice_row(invoice_id="INV-7", due_date="2026-11-16"),  # 8 days: stage 7
        invoice_row(invoice_id="INV-28", due_date="2026-10-27", amount="5000"),  # stage 28
        invoice_row(invoice_id="INV-PAID", due_date="2026-10-01", status="Paid"),
        invoice_row(invoice_id="INV-NEW", due_date="2026-11-20"),  # 4 days: not due
        invoice_row(invoice_id="INV-BAD", amount=""),  # a data problem
    ]


class Harness:
    """The ports of one run, with the real templates and settings."""

    def __init__(self, settings: Settings, source: FakeSource) -> None:
        self.services = build_services(settings)
        self.source = source
        self.ledger = FakeLedger()
        self.sink = FakeSink()
        self.notifier = FakeNotifier()
        self.sink_made = 0
        self.progress: list[tuple[int, int]] = []
        self.now = NOON_UTC

    def run(self, **kwargs: Any) -> RunReport:
        def make_sink() -> FakeSink:
            self.sink_made += 1
            return self.sink

        options: dict[str, Any] = {"today": TODAY, "dry_run": False}
        options.update(kwargs)
        return run_sheet(
            self.source,
            ledger=self.ledger,
            sink=make_sink,
            templates=self.services.templates,
            settings=options.pop("settings", self.services.run_settings),
            clock=lambda: self.now,
            notifier=self.notifier,
            on_progress=lambda done, total: self.progress.append((done, total)),
            **options,
        )


@pytest.fixture
def harness(settings: Settings) -> Harness:
    return Harness(settings, FakeSource(rows()))


def by_id(report: RunReport) -> dict[str, dict[str, Any]]:
    return {r["invoice_id"]: r for r in report.rows}


def test_due_rows_are_drafted_and_written_back_in_one_write(harness: Harness) -> None:
    report = harness.run()

    assert harness.source.reads == 1
    assert len(harness.source.writes) == 1
    assert sorted(harness.sink.keys()) == ["fake-sheet/INV-28/28", "fake-sheet/INV-7/7"]
    assert report.status is RunStatus.DONE
    assert (report.drafted, report.written) == (2, 2)
    results = by_id(report)
    assert results["INV-7"]["reason"] == "drafted"
    assert results["INV-PAID"]["reason"] == "closed_status"
    assert results["INV-NEW"]["reason"] == "not_due"
    assert results["INV-BAD"]["action"] == "error"
    written = {r["invoice_id"]: r for r in harness.source.rows}
    assert written["INV-7"]["last_stage_sent"] == "7"
    assert written["INV-28"]["last_sent_at"] == "2026-11-24"
    assert "last_stage_sent" not in written["INV-PAID"]  # untouched rows are not written


def test_the_same_run_again_the_same_day_drafts_nothing_and_writes_nothing(
    harness: Harness,
) -> None:
    harness.run()
    again = harness.run()

    assert again.drafted == 0
    assert again.written == 0
    assert len(harness.sink.drafts) == 2
    assert len(harness.source.writes) == 1
    assert by_id(again)["INV-7"]["reason"] == "already_drafted_today"


def test_a_dry_run_creates_nothing_writes_nothing_and_needs_no_mailbox(
    harness: Harness,
) -> None:
    report = harness.run(dry_run=True)

    assert report.dry_run is True
    assert report.summary["draft"] == 2
    assert harness.sink_made == 0
    assert harness.source.writes == []
    assert harness.notifier.calls == []


def test_rows_of_a_report_never_carry_email_bodies(harness: Harness) -> None:
    reports = [harness.run(dry_run=True), harness.run()]
    message = email.message_from_bytes(harness.sink.drafts[0].raw, policy=email.policy.default)
    part = message.get_body(("plain",))
    assert isinstance(part, EmailMessage)
    body_line = next(line for line in part.get_content().splitlines() if len(line) > 30)
    for report in reports:
        assert all("body" not in row for row in report.rows)
        assert body_line.strip() not in json.dumps(report.as_dict())


def test_outside_the_window_nothing_is_read_unless_forced(harness: Harness) -> None:
    settings = harness.services.run_settings
    office_hours = RunSettings(
        settings.plan, settings.draft, window=Window(8, 18, "Pacific/Auckland")
    )
    harness.now = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)  # 01:00 in Auckland

    skipped = harness.run(settings=office_hours)
    assert skipped.status is RunStatus.OUTSIDE_WINDOW
    assert harness.source.reads == 0

    forced = harness.run(settings=office_hours, force=True)
    assert forced.status is RunStatus.DONE
    assert forced.drafted == 2


def test_the_window_is_in_local_hours_and_excludes_its_end() -> None:
    utc_2000 = dt.datetime(2026, 11, 23, 20, 0, tzinfo=dt.UTC)  # 09:00 next day in Auckland
    assert within_window(utc_2000, "Pacific/Auckland", 8, 18)
    assert not within_window(utc_2000, "UTC", 8, 18)
    assert within_window(dt.datetime(2026, 1, 1, 17, 59, tzinfo=dt.UTC), "UTC", 8, 18)
    assert not within_window(dt.datetime(2026, 1, 1, 18, 0, tzinfo=dt.UTC), "UTC", 8, 18)
    assert within_window(dt.datetime(2026, 1, 1, 23, 59, tzinfo=dt.UTC), "UTC", 0, 24)
    with pytest.raises(ValueError, match="aware"):
        within_window(dt.datetime(2026, 1, 1, 12), "UTC", 8, 18)


def test_today_defaults_to_the_date_in_the_spreadsheets_timezone(settings: Settings) -> None:
    # 23:30 UTC on the 23rd is already the 24th in Auckland: INV-7 turns 8 days overdue.
    harness = Harness(settings, FakeSource(rows(), timezone="Pacific/Auckland"))
    harness.now = dt.datetime(2026, 11, 23, 23, 30, tzinfo=dt.UTC)

    report = harness.run(today=None)

    assert report.today == TODAY
    assert by_id(report)["INV-7"]["days_overdue"] == 8


def test_progress_reports_the_total_first_then_each_draft(harness: Harness) -> None:
    harness.run()
    assert harness.progress == [(0, 2), (1, 2), (2, 2)]


def test_a_failed_draft_is_retryable_and_its_row_is_not_written_back(harness: Harness) -> None:
    harness.sink.failures.append(transient())
    report = harness.run()

    assert report.failed == 1
    assert report.drafted == 1
    assert len(harness.source.writes[0]) == 1

    harness.now += dt.timedelta(minutes=5)
    retry = harness.run()
    assert retry.drafted == 1
    assert retry.failed == 0


def test_a_lost_write_back_is_repaired_by_the_next_run_without_a_new_draft(
    harness: Harness,
) -> None:
    harness.source.fail_write = OSError("disk full")
    first = harness.run()
    assert first.drafted == 2
    assert first.write_error is not None and "disk full" in first.write_error

    harness.source.fail_write = None
    second = harness.run()

    assert len(harness.sink.drafts) == 2  # no second draft for the same stage
    assert second.written == 2
    assert by_id(second)["INV-7"]["reason"] == "duplicate"
    assert {r["invoice_id"]: r.get("last_stage_sent") for r in harness.source.rows}["INV-7"] == "7"


def test_the_notifier_hears_of_this_runs_drafts_once(harness: Harness) -> None:
    harness.run()
    harness.run()

    assert len(harness.notifier.calls) == 1
    assert sorted(i.invoice_id for i in harness.notifier.calls[0]) == ["INV-28", "INV-7"]


@responses.activate
def test_slack_gets_one_message_listing_only_late_and_large_drafts(harness: Harness) -> None:
    responses.post(HOOK, body="ok")
    harness.notifier = SlackNotifier(HOOK, min_amount=Decimal("1000"))  # type: ignore[assignment]

    report = harness.run()

    assert report.alerted is True
    assert len(responses.calls) == 1
    body = responses.calls[0].request.body
    assert body is not None
    text = json.dumps(json.loads(body))
    assert "INV-28" in text
    assert "INV-7" not in text  # stage 7 is below the alert stage


@responses.activate
def test_slack_being_down_does_not_fail_the_run(harness: Harness) -> None:
    responses.post(HOOK, status=500)
    harness.notifier = SlackNotifier(HOOK, min_amount=Decimal("0"))  # type: ignore[assignment]

    report = harness.run()

    assert report.drafted == 2
    assert report.alerted is False
