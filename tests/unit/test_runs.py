"""run_sheet(): the headless run over fakes — one read, drafts at most once, one write-back."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import time
from collections.abc import Callable
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import responses

from service.adapters.migrate import upgrade
from service.adapters.runs_sql import SqlRuns
from service.adapters.slack import SlackNotifier
from service.bootstrap import build_services
from service.config import Settings
from service.ports import RunState
from service.usecases.run import (
    RunReport,
    RunSettings,
    RunStatus,
    Window,
    record_run,
    run_sheet,
)
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
        settings.plan, settings.draft, timezone="Pacific/Auckland", window=Window(8, 18)
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
    assert Window(8, 18).contains(utc_2000, "Pacific/Auckland")
    assert not Window(8, 18).contains(utc_2000, "UTC")
    assert Window(8, 18).contains(dt.datetime(2026, 1, 1, 17, 59, tzinfo=dt.UTC), "UTC")
    assert not Window(8, 18).contains(dt.datetime(2026, 1, 1, 18, 0, tzinfo=dt.UTC), "UTC")
    assert Window(0, 24).contains(dt.datetime(2026, 1, 1, 23, 59, tzinfo=dt.UTC), "UTC")
    with pytest.raises(ValueError, match="aware"):
        Window(8, 18).contains(dt.datetime(2026, 1, 1, 12), "UTC")


class ZonedSource(FakeSource):
    """A source that, like a Google Sheet, says its own zone before it is read."""

    def spreadsheet_timezone(self) -> str | None:
        return self.timezone


def test_today_defaults_to_the_date_in_the_spreadsheets_timezone(settings: Settings) -> None:
    # 23:30 UTC on the 23rd is already the 24th in Auckland: INV-7 turns 8 days overdue.
    harness = Harness(settings, ZonedSource(rows(), timezone="Pacific/Auckland"))
    harness.now = dt.datetime(2026, 11, 23, 23, 30, tzinfo=dt.UTC)

    report = harness.run(today=None)

    assert report.today == TODAY
    assert (report.timezone, report.timezone_from) == ("Pacific/Auckland", "spreadsheet")
    assert by_id(report)["INV-7"]["days_overdue"] == 8


def test_timezone_overrides_the_sheets_own_zone_and_a_plain_file_uses_the_machines(
    make_settings: Callable[..., Settings],
) -> None:
    now = dt.datetime(2026, 11, 23, 23, 30, tzinfo=dt.UTC)  # the 24th in Auckland
    pinned = Harness(
        make_settings(TIMEZONE="UTC"), ZonedSource(rows(), timezone="Pacific/Auckland")
    )
    pinned.now = now
    report = pinned.run(today=None)
    assert (report.today, report.timezone_from) == (TODAY - dt.timedelta(days=1), "TIMEZONE")

    local = Harness(make_settings(TZ="Asia/Tokyo"), FakeSource(rows()))  # no zone of its own
    local.now = now
    report = local.run(today=None)
    assert (report.today, report.timezone, report.timezone_from) == (TODAY, "Asia/Tokyo", "machine")


def test_outside_the_window_the_run_warns_in_the_log(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    harness = Harness(make_settings(WINDOW_START="8", WINDOW_END="18"), FakeSource(rows()))
    harness.now = dt.datetime(2026, 11, 24, 3, 0, tzinfo=dt.UTC)
    source = ZonedSource(rows(), timezone="America/Los_Angeles")  # 19:00 the day before there
    harness.source = source

    assert harness.run().status is RunStatus.OUTSIDE_WINDOW
    assert source.reads == 0
    warning = next(r for r in caplog.records if r.message == "run skipped: outside the window")
    assert warning.levelname == "WARNING"
    assert warning.timezone == "America/Los_Angeles"  # type: ignore[attr-defined]


def test_the_log_tab_gets_one_line_per_draft_once_per_run(harness: Harness) -> None:
    appended: list[list[list[object]]] = []
    report = harness.run(draft_log=lambda lines: appended.append([list(x) for x in lines]))

    assert report.drafted == 2
    assert len(appended) == 1
    assert [line[1:] for line in appended[0]] == [
        ["INV-7", 7, "ann@client.example.com"],
        ["INV-28", 28, "ann@client.example.com"],
    ]
    assert appended[0][0][0] == "2026-11-24T12:00:00+00:00"
    harness.run(draft_log=lambda lines: appended.append(list(lines)))  # nothing new: no call
    assert len(appended) == 1


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
    harness.notifier = SlackNotifier(HOOK, min_amount={"USD": Decimal("1000")})  # type: ignore[assignment]

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
    harness.notifier = SlackNotifier(HOOK, min_amount={})  # type: ignore[assignment]

    report = harness.run()

    assert report.drafted == 2
    assert report.alerted is False


def test_a_slow_run_is_kept_alive_by_its_heartbeat_past_the_lease(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    upgrade(url)
    now = [NOON_UTC]
    runs = SqlRuns(url, lease_seconds=60, clock=lambda: now[0])
    run = runs.create_run("fake-sheet", now=now[0])
    seen: list[RunState] = []

    def execute(progress: Callable[[int, int], None]) -> RunReport:
        now[0] += dt.timedelta(minutes=5)  # a long Gmail back-off: five leases, no progress
        time.sleep(0.2)  # heartbeats every 10 ms touch the run at the new "now"
        seen.append(runs.get_run(run.id).state)  # type: ignore[union-attr]
        return RunReport(RunStatus.DONE, True, today=TODAY)

    record_run(runs, run.id, execute, clock=lambda: now[0], heartbeat_s=0.01)

    assert seen == [RunState.RUNNING]
    assert runs.get_run(run.id).state is RunState.DONE  # type: ignore[union-attr]
