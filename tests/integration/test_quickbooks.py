"""QuickBooks Online as an invoice source, against QBO-shaped responses and a real ledger DB."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
import responses

from service.adapters.http_retry import RetryPolicy
from service.adapters.intuit_auth import (
    IntuitTokens,
    QuickBooksAuthorizationError,
    QuickBooksError,
    RefreshTokenFile,
)
from service.adapters.ledger_sql import SqlLedger
from service.adapters.migrate import upgrade
from service.adapters.quickbooks import QuickBooksSource
from service.config import PROJECT_ROOT
from service.domain.decide import DEFAULT_STAGES, Policy, Reason
from service.domain.invoice import ParseOptions
from service.ports import CreatedDraft, DraftKey
from service.rendering import RenderSettings, TemplateSet
from service.usecases.drafts import DraftSettings, generate_drafts
from service.usecases.plan import PlannedRow, PlanSettings, plan
from tests.fakes import FakeSink

REALM = "9130350000000001"
API = "https://qbo.test"
QUERY_URL = f"{API}/v3/company/{REALM}/query"
TOKEN_URL = "https://oauth.test/oauth2/v1/tokens/bearer"
TODAY = dt.date(2026, 11, 24)
NOW = dt.datetime(2026, 11, 24, 9, 30, tzinfo=dt.UTC)
TEMPLATES = TemplateSet(PROJECT_ROOT / "templates", DEFAULT_STAGES)
PLAN = PlanSettings(Policy(), ParseOptions(), RenderSettings(sender_name="Acme"))
DRAFT = DraftSettings("Acme AR <ar@acme.example.com>", "acme.example.com", render=PLAN.render)
SECRETS = ("client-secret", "refresh-0", "refresh-1", "access-1", "access-2")


def qbo_invoice(i: int) -> dict[str, Any]:
    """One open invoice as QBO returns it; days overdue cycle through -5…44."""
    days = i % 50 - 5
    due = TODAY - dt.timedelta(days=days)
    total = 1250.5 + i
    jpy = i % 10 == 0
    return {
        "Id": str(i + 1),
        "SyncToken": "0",
        "DocNumber": f"{1001 + i}",
        "TxnDate": (due - dt.timedelta(days=30)).isoformat(),
        "DueDate": due.isoformat(),
        "CustomerRef": {"value": str(60 + i), "name": f"Client {i}"},
        "BillEmail": {"Address": f"ap{i}@client.example.com"},
        "CurrencyRef": {"value": "JPY", "name": "Japanese Yen"}
        if jpy
        else {"value": "USD", "name": "United States Dollar"},
        "TotalAmt": 125000 if jpy else total,
        "Balance": 125000 if jpy else (total - 250 if i % 7 == 0 else total),
        "PrivateNote": "internal only",
        "MetaData": {"CreateTime": "2026-09-01T10:00:00-07:00"},
    }


def expected_stage(i: int) -> int | None:
    days = i % 50 - 5
    return max((s for s in DEFAULT_STAGES if s <= days), default=None)


class FakeQbo:
    """QuickBooks' query endpoint and Intuit's token endpoint, with scripted failures."""

    def __init__(self, mock: responses.RequestsMock, invoices: list[dict[str, Any]]) -> None:
        self.invoices = invoices
        self.valid_tokens: set[str] = set()
        self.issued = 0
        self.refresh_bodies: list[dict[str, list[str]]] = []
        self.queries: list[str] = []
        self.scripted: list[tuple[int, dict[str, str]]] = []  # (status, headers) served first
        self.rotate_to: str | None = None
        self.on_query: Callable[[], None] | None = None  # called as each query arrives
        # STARTPOSITION -> a body served with 200: Intuit's error-codes page says a 200 "may
        # contain a <Fault> element", and its data-queries page that on a query error "the
        # <QueryResponse> element contains the <Fault> element".
        self.faults_at: dict[int, dict[str, Any]] = {}
        # Seconds the realm stays throttled from the first query, on the clock `elapsed` reads:
        # Intuit's limits-and-throttles page says on a 429 "wait 60 seconds before retrying",
        # and sends no Retry-After; the ThrottleExceeded body may be XML even when JSON was
        # asked for (routablehq/python-quickbooks#43).
        self.throttle_for = 0.0
        self.elapsed: Callable[[], float] = lambda: 0.0
        self._throttled_from: float | None = None
        mock.add_callback(responses.POST, TOKEN_URL, callback=self._token)
        mock.add_callback(responses.GET, QUERY_URL, callback=self._query)

    def _token(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        form = parse_qs(str(request.body))
        self.refresh_bodies.append(form)
        if form["refresh_token"][0] not in ("refresh-0", "refresh-1"):
            return 400, {}, json.dumps({"error": "invalid_grant"})
        self.issued += 1
        token = f"access-{self.issued}"
        self.valid_tokens.add(token)
        body = {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": 3600,
            "refresh_token": self.rotate_to or form["refresh_token"][0],
            "x_refresh_token_expires_in": 8726400,
        }
        return 200, {}, json.dumps(body)

    def _query(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        if self.on_query is not None:
            self.on_query()
        if self.scripted:
            status, headers = self.scripted.pop(0)
            return status, headers, json.dumps({"Fault": {"Error": [{"Message": "scripted"}]}})
        if self.throttle_for:
            if self._throttled_from is None:
                self._throttled_from = self.elapsed()
            if self.elapsed() < self._throttled_from + self.throttle_for:
                throttled = (
                    '<IntuitResponse><Fault type="SERVICE"><Error code="3001"><Message>'
                    "message=ThrottleExceeded; errorCode=003001; statusCode=429</Message>"
                    "</Error></Fault></IntuitResponse>"
                )
                return 429, {"Content-Type": "application/xml"}, throttled
        auth = request.headers.get("Authorization", "")
        if auth.removeprefix("Bearer ") not in self.valid_tokens:
            fault = {"Error": [{"Message": "AuthenticationFailed", "code": "100"}]}
            return 401, {}, json.dumps({"Fault": fault, "time": "2026-11-24T01:30:00-08:00"})
        query = parse_qs(urlparse(str(request.url)).query)["query"][0]
        self.queries.append(query)
        match = re.search(r"STARTPOSITION (\d+) MAXRESULTS (\d+)", query)
        assert match and query.startswith("select * from Invoice where Balance > '0'")
        start, size = int(match[1]), int(match[2])
        if start in self.faults_at:
            return 200, {"intuit_tid": "1-abc"}, json.dumps(self.faults_at[start])
        page = self.invoices[start - 1 : start - 1 + size]
        # Past the last row Intuit answers an empty QueryResponse: no Invoice key, no
        # startPosition/maxResults, never a totalCount (simonv3/quickbooks-python#4).
        result: dict[str, Any] = {}
        if page:
            result = {"Invoice": page, "startPosition": start, "maxResults": len(page)}
        body = {"QueryResponse": result, "time": "2026-11-24T01:30:00.000-08:00"}
        return 200, {"intuit_tid": "1-abc"}, json.dumps(body)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[SqlLedger]:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    ledger = SqlLedger(url)
    yield ledger
    ledger.engine.dispose()


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as m:
        yield m


@pytest.fixture
def qbo(mock: responses.RequestsMock) -> FakeQbo:
    return FakeQbo(mock, [qbo_invoice(i) for i in range(250)])


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_source(
    ledger: SqlLedger,
    tmp_path: Path,
    sleeps: Sleeps | None = None,
    refresh: str = "refresh-0",
    token_file: Path | None = None,
) -> QuickBooksSource:
    session = requests.Session()
    sleep = sleeps if sleeps is not None else Sleeps()
    tokens = IntuitTokens(
        "client-id",
        "client-secret",
        refresh,
        token_url=TOKEN_URL,
        session=session,
        token_file=RefreshTokenFile(token_file or tmp_path / "qbo_token.json", refresh),
        sleep=sleep,
        clock=lambda: NOW,
    )
    return QuickBooksSource(
        REALM,
        tokens,
        ledger,
        api_base=API,
        session=session,
        page_size=100,
        policy=RetryPolicy(max_attempts=4, max_total_s=300, base_delay_s=0.5, max_delay_s=30),
        sleep=sleep,
    )


def plan_source(source: QuickBooksSource) -> list[PlannedRow]:
    snapshot = source.read()
    rows = [{**r.values, "row": r.row} for r in snapshot.rows]
    return plan(rows, today=TODAY, settings=PLAN, templates=TEMPLATES)


def test_250_open_invoices_over_3_pages_become_250_rows_with_their_stages(
    qbo: FakeQbo, ledger: SqlLedger, tmp_path: Path
) -> None:
    source = make_source(ledger, tmp_path)
    snapshot = source.read()

    assert len(snapshot.rows) == 250
    assert snapshot.scope == f"quickbooks:{REALM}"
    pages = [re.findall(r"STARTPOSITION \d+ MAXRESULTS \d+", q) for q in qbo.queries]
    assert pages == [
        ["STARTPOSITION 1 MAXRESULTS 100"],
        ["STARTPOSITION 101 MAXRESULTS 100"],
        ["STARTPOSITION 201 MAXRESULTS 100"],
    ]
    planned = plan(
        [{**r.values, "row": r.row} for r in snapshot.rows],
        today=TODAY,
        settings=PLAN,
        templates=TEMPLATES,
    )
    assert [p.decision.stage for p in planned] == [expected_stage(i) for i in range(250)]
    assert all(p.invoice is not None for p in planned)
    by_id = {p.invoice_id: p.invoice for p in planned}
    partial = by_id["1008"]  # i = 7: 250 paid of 1257.50
    assert partial is not None and str(partial.balance) == "1007.5"
    assert str(partial.amount_paid) == "250.0"
    yen = by_id["1001"]
    assert yen is not None and (yen.currency, yen.balance) == ("JPY", 125000)
    assert yen.client_emails == ("ap0@client.example.com",) and yen.notes == ""
    due = sum(1 for i in range(250) if expected_stage(i) is not None)
    assert sum(p.is_draft for p in planned) == due


def test_a_run_the_same_day_drafts_nothing_new(
    qbo: FakeQbo, ledger: SqlLedger, tmp_path: Path
) -> None:
    source, sink = make_source(ledger, tmp_path), FakeSink()

    def run() -> int:
        snapshot = source.read()
        planned = plan(
            [{**r.values, "row": r.row} for r in snapshot.rows],
            today=TODAY,
            settings=PLAN,
            templates=TEMPLATES,
        )
        result = generate_drafts(
            planned,
            scope=snapshot.scope,
            today=TODAY,
            ledger=ledger,
            sink=sink,
            settings=DRAFT,
            templates=TEMPLATES,
            clock=lambda: NOW,
        )
        updates = [o.writeback for o in result.outcomes if o.writeback is not None]
        assert source.write_back(snapshot, updates) == 0  # the ledger already holds the state
        return result.drafted

    first = run()
    assert first == sum(1 for i in range(250) if expected_stage(i) is not None)
    assert run() == 0
    assert len(sink.drafts) == first

    again = plan_source(source)
    assert not any(p.is_draft for p in again)
    drafted = [p for p in again if p.decision.stage is not None]
    assert {p.decision.reason for p in drafted} == {Reason.ALREADY_DRAFTED_TODAY}
    assert all(p.invoice and p.invoice.last_sent_at == TODAY for p in drafted)


def test_reminder_state_is_read_back_from_the_ledger(
    qbo: FakeQbo, ledger: SqlLedger, tmp_path: Path
) -> None:
    scope = f"quickbooks:{REALM}"
    earlier = NOW - dt.timedelta(days=8)
    for stage in (7, 14):  # invoice 1040 (i = 39, 34 days overdue) had two reminders
        key = DraftKey(scope, "1040", stage)
        ledger.claim_all([key], now=earlier, lease_seconds=60)
        ledger.record_created(
            key, CreatedDraft(f"d{stage}"), drafted_on=earlier.date(), now=earlier
        )

    rows = {r.values["invoice_id"]: r.values for r in make_source(ledger, tmp_path).read().rows}

    assert rows["1040"]["last_stage_sent"] == 14
    assert rows["1040"]["last_sent_at"] == earlier.date()
    assert rows["1041"]["last_stage_sent"] is None


def test_an_expired_access_token_triggers_exactly_one_refresh(
    qbo: FakeQbo, ledger: SqlLedger, tmp_path: Path
) -> None:
    source = make_source(ledger, tmp_path)
    source.read()
    assert len(qbo.refresh_bodies) == 1
    qbo.valid_tokens.clear()  # Intuit revoked or expired the hour-long token early

    assert len(source.read().rows) == 250
    assert len(qbo.refresh_bodies) == 2


def test_a_401_after_a_refresh_is_an_authorization_error_not_a_loop(
    qbo: FakeQbo, ledger: SqlLedger, tmp_path: Path
) -> None:
    source = make_source(ledger, tmp_path)
    qbo.scripted = [(401, {}), (401, {})]

    with pytest.raises(QuickBooksAuthorizationError) as exc:
        source.read()
    assert exc.value.code == "quickbooks_unauthorized"
    assert len(qbo.refresh_bodies) == 2


def test_rate_limits_are_retried_honouring_retry_after(
    qbo: FakeQbo, ledger: SqlLedger, tmp_path: Path
) -> None:
    sleeps = Sleeps()
    source = make_source(ledger, tmp_path, sleeps)
    qbo.scripted = [(429, {"Retry-After": "3"}), (429, {"Retry-After": "45"})]

    assert len(source.read().rows) == 250
    assert sleeps == [3.0, 45.0]  # a floor, even above the 30 s backoff cap


def test_a_retry_after_past_the_time_budget_gives_up_at_once(
    qbo: FakeQbo, ledger: SqlLedger, tmp_path: Path
) -> None:
    sleeps = Sleeps()
    qbo.scripted = [(429, {"Retry-After": "600"})]

    with pytest.raises(QuickBooksError) as exc:
        make_source(ledger, tmp_path, sleeps).read()
    assert exc.value.code == "rate_limited"
    assert sleeps == []


def test_persistent_rate_limiting_gives_up_after_bounded_attempts(
    qbo: FakeQbo, ledger: SqlLedger, tmp_path: Path
) -> None:
    sleeps = Sleeps()
    qbo.scripted = [(429, {})] * 10

    with pytest.raises(QuickBooksError) as exc:
        make_source(ledger, tmp_path, sleeps).read()
    assert exc.value.code == "rate_limited"
    assert sleeps == [60.0] * 3  # four attempts, each the minute Intuit asks for on a 429


def test_a_throttled_realm_is_retried_after_the_minute_intuit_asks_for(
    qbo: FakeQbo, ledger: SqlLedger, tmp_path: Path
) -> None:
    sleeps = Sleeps()
    qbo.elapsed = lambda: sum(sleeps)
    qbo.throttle_for = 60.0

    assert len(make_source(ledger, tmp_path, sleeps).read().rows) == 250
    assert sleeps == [60.0]  # one wait, not quick retries refused for the rest of the minute


@pytest.mark.parametrize("nested", [False, True], ids=["beside", "inside_QueryResponse"])
def test_a_fault_in_a_200_answer_stops_the_read_instead_of_ending_the_list(
    qbo: FakeQbo, ledger: SqlLedger, tmp_path: Path, nested: bool
) -> None:
    fault = {
        "Error": [{"Message": "A business validation error", "Detail": "boom", "code": "6000"}],
        "type": "ValidationFault",
    }
    qbo.faults_at[101] = {"QueryResponse": {"Fault": fault}} if nested else {"Fault": fault}

    with pytest.raises(QuickBooksError, match="boom") as exc:
        make_source(ledger, tmp_path).read()
    assert exc.value.code == "quickbooks_error"
    assert "intuit_tid 1-abc" in str(exc.value)


@pytest.mark.parametrize("count", [0, 99, 100, 200])
def test_paging_ends_on_a_short_or_empty_page_without_skipping(
    qbo: FakeQbo, ledger: SqlLedger, tmp_path: Path, count: int
) -> None:
    del qbo.invoices[count:]

    rows = make_source(ledger, tmp_path).read().rows

    assert [r.values["invoice_id"] for r in rows] == [f"{1001 + i}" for i in range(count)]
    assert len(qbo.queries) == count // 100 + 1  # an exact multiple costs one empty page


def test_a_rotated_refresh_token_is_used_after_a_restart(
    qbo: FakeQbo, ledger: SqlLedger, tmp_path: Path
) -> None:
    qbo.rotate_to = "refresh-1"
    make_source(ledger, tmp_path).read()
    make_source(ledger, tmp_path).read()  # a new process, same QBO_REFRESH_TOKEN setting

    assert [b["refresh_token"] for b in qbo.refresh_bodies] == [["refresh-0"], ["refresh-1"]]
    token_file = tmp_path / "qbo_token.json"
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert "refresh-1" in token_file.read_text()


def test_a_reconnected_app_uses_its_new_configured_token(
    qbo: FakeQbo, ledger: SqlLedger, tmp_path: Path
) -> None:
    RefreshTokenFile(tmp_path / "qbo_token.json", "refresh-old").save("refresh-stale")
    make_source(ledger, tmp_path, refresh="refresh-0").read()

    assert qbo.refresh_bodies[0]["refresh_token"] == ["refresh-0"]


def test_a_revoked_refresh_token_asks_to_reconnect(
    qbo: FakeQbo, ledger: SqlLedger, tmp_path: Path
) -> None:
    with pytest.raises(QuickBooksAuthorizationError, match="reconnect"):
        make_source(ledger, tmp_path, refresh="refresh-revoked").read()


def test_tokens_never_reach_logs_or_errors(
    qbo: FakeQbo, ledger: SqlLedger, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    source = make_source(ledger, tmp_path)
    source.read()
    qbo.scripted = [(401, {}), (401, {})]
    with pytest.raises(QuickBooksAuthorizationError) as exc:
        source.read()

    text = caplog.text + str(exc.value)
    assert "quickbooks access token refreshed" in caplog.text
    assert not [secret for secret in SECRETS if secret in text]


def test_an_invoice_without_a_billing_email_is_an_error_row(
    qbo: FakeQbo, ledger: SqlLedger, tmp_path: Path
) -> None:
    del qbo.invoices[45]["BillEmail"]  # 40 days overdue, otherwise due

    planned = plan_source(make_source(ledger, tmp_path))

    bad = next(p for p in planned if p.invoice_id == "1046")
    assert bad.decision.reason is Reason.INVALID_ROW
    assert bad.errors == {"client_email": "is required"}


def test_a_rotated_refresh_token_is_on_disk_before_its_access_token_is_used(
    qbo: FakeQbo, ledger: SqlLedger, tmp_path: Path
) -> None:
    qbo.rotate_to = "refresh-1"
    token_file = tmp_path / "state" / "qbo_token.json"
    on_disk: list[str] = []
    qbo.on_query = lambda: on_disk.append(token_file.read_text() if token_file.exists() else "")

    make_source(ledger, tmp_path, token_file=token_file).read()

    assert on_disk
    assert "refresh-1" in on_disk[0]


def test_a_rotated_token_that_cannot_be_saved_is_printed_once_and_the_run_stops(
    qbo: FakeQbo,
    ledger: SqlLedger,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    qbo.rotate_to = "refresh-1"
    token_file = tmp_path / "qbo_token.json"
    token_file.mkdir()  # the save replaces a file: a directory in its place makes it fail

    with pytest.raises(QuickBooksError) as exc:
        make_source(ledger, tmp_path, token_file=token_file).read()

    assert exc.value.code == "token_not_saved"
    assert qbo.queries == []  # the new access token was never used
    err = capsys.readouterr().err
    assert err.count("refresh-1") == 1
    assert "QBO_REFRESH_TOKEN=refresh-1" in err
    assert "refresh-1" not in str(exc.value) + caplog.text


def test_an_unwritable_token_directory_stops_before_intuit_rotates_anything(
    qbo: FakeQbo, ledger: SqlLedger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "state").write_text("a file where the state directory should be")

    with pytest.raises(QuickBooksError, match="QBO_TOKEN_FILE") as exc:
        make_source(ledger, tmp_path, token_file=tmp_path / "state" / "qbo_token.json").read()

    assert exc.value.code == "token_file_unwritable"
    assert qbo.refresh_bodies == []  # Intuit was never asked, so no token was rotated away
    assert "refresh-0" not in str(exc.value) + capsys.readouterr().err
