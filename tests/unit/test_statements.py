"""One statement per client (GROUP_BY_CLIENT): one draft lists a client's due invoices, and
exactly-once still holds per (invoice, stage)."""

from __future__ import annotations

import datetime as dt
from email import message_from_bytes, policy

from service.config import PROJECT_ROOT
from service.domain.decide import Policy
from service.domain.invoice import ParseOptions
from service.ports import ClaimOutcome, DraftKey
from service.rendering import RenderSettings, TemplateSet
from service.usecases.drafts import DraftSettings, GenerateResult, generate_drafts
from service.usecases.plan import PlanSettings, plan
from tests.conftest import invoice_row
from tests.fakes import FakeLedger, FakeSink

STAGES = (7, 14, 21, 28, 35, 42)
TEMPLATES = TemplateSet(PROJECT_ROOT / "templates", STAGES)
PLAN = PlanSettings(Policy(), ParseOptions(), RenderSettings(sender_name="Acme"))
NOW = dt.datetime(2025, 1, 22, 9, tzinfo=dt.UTC)
CLIENT = "ap@bigco.example.com"
ROWS = [
    invoice_row(invoice_id="B-1", client_email=CLIENT, due_date="2025-01-14", amount="100"),
    invoice_row(invoice_id="B-2", client_email="AP@BigCo.example.com", due_date="2024-12-20"),
    invoice_row(invoice_id="B-3", client_email=CLIENT, due_date="2025-01-01", currency="EUR"),
    invoice_row(invoice_id="S-1", client_email="solo@other.example.com", due_date="2025-01-10"),
]


def draft(
    ledger: FakeLedger, sink: FakeSink, rows: list[dict[str, object]] = ROWS
) -> GenerateResult:
    planned = plan(rows, today=NOW.date(), settings=PLAN, templates=TEMPLATES, render=False)
    settings = DraftSettings("ar@acme.example.com", "acme.example.com", render=PLAN.render,
                             group_by_client=True)  # fmt: skip
    return generate_drafts(
        planned, scope="sheet-1", today=NOW.date(), ledger=ledger, sink=sink,
        settings=settings, templates=TEMPLATES, clock=lambda: NOW,
    )  # fmt: skip


def test_a_clients_due_invoices_share_one_statement_draft() -> None:
    ledger, sink = FakeLedger(), FakeSink()
    result = draft(ledger, sink)

    assert len(sink.drafts) == 2  # BigCo's statement and S-1's own reminder
    by_id = {o.planned.invoice_id: o for o in result.outcomes}
    statement = {by_id[i].entry.draft_id for i in ("B-1", "B-2", "B-3")}  # type: ignore[union-attr]
    assert len(statement) == 1 and by_id["S-1"].entry.draft_id not in statement  # type: ignore[union-attr]
    # Each invoice keeps its own stage, and each row is written back.
    stages = {i: by_id[i].entry.key.stage for i in ("B-1", "B-2", "B-3")}  # type: ignore[union-attr]
    assert stages == {"B-1": 7, "B-2": 28, "B-3": 21}
    assert all(o.writeback is not None for o in result.outcomes)
    assert "statement of 3 invoices" in by_id["B-1"].writeback.reminder_status  # type: ignore[union-attr]
    message = message_from_bytes(
        next(d.raw for d in sink.drafts if d.key.invoice_id.startswith("B")), policy=policy.default
    )
    body = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert all(i in body for i in ("B-1", "B-2", "B-3")) and "€" in body and "$" in body


def test_a_second_call_drafts_no_second_statement() -> None:
    ledger, sink = FakeLedger(), FakeSink()
    draft(ledger, sink)
    again = draft(ledger, sink)
    assert len(sink.drafts) == 2
    assert {o.reason.value for o in again.outcomes} == {"duplicate"}
    assert all(o.writeback is not None for o in again.outcomes)  # the sheet can still be repaired


def test_a_statement_waits_while_one_of_its_keys_is_held() -> None:
    ledger, sink = FakeLedger(), FakeSink()
    [held] = ledger.claim_all([DraftKey("sheet-1", "B-2", 28)], now=NOW, lease_seconds=60)
    assert held.outcome is ClaimOutcome.CLAIMED
    result = draft(ledger, sink)
    big = [o for o in result.outcomes if o.planned.invoice_id.startswith("B")]
    assert {(o.reason.value, o.retryable) for o in big} == {("duplicate", True)}
    # Nothing of the statement was claimed: its other keys are free for the next call.
    assert ledger.get(DraftKey("sheet-1", "B-1", 7)) is None
    assert [d.key.invoice_id for d in sink.drafts] == ["S-1"]
