"""A broken stage template is an error the user sees, never a blank in a client's email.

DESIGN §5: sandboxed Jinja2 with StrictUndefined. An unknown merge field is a load error that
GET /v1/templates reports; a field used wrongly (an attribute a text value does not have)
turns the rows of that stage into ``error`` rows with reason ``template_error`` while the other
stages still draft.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from service.api.app import create_app
from service.bootstrap import build_services
from service.config import PROJECT_ROOT, Settings
from tests.conftest import FIXED_NOW, invoice_row

TODAY = "2025-01-22"
# Due dates that put a row at stage 7, 14 and 21 on TODAY (DESIGN §4's seed examples).
DUE_FOR_STAGE = {7: "2025-01-15", 14: "2025-01-08", 21: "2025-01-01"}


@pytest.fixture
def templates_with(
    tmp_path: Path, make_settings: Callable[..., Settings]
) -> Callable[[int, str], FlaskClient]:
    """A client whose templates are the project's, except one stage's file."""

    def build(stage: int, source: str) -> FlaskClient:
        directory = tmp_path / "templates"
        directory.mkdir()
        for template in (PROJECT_ROOT / "templates").glob("*.txt"):
            shutil.copy(template, directory / template.name)
        (directory / f"stage_{stage:02d}.txt").write_text(source, encoding="utf-8")
        settings = make_settings(TEMPLATES_DIR=str(directory))
        app = create_app(services=build_services(settings, clock=lambda: FIXED_NOW))
        return app.test_client()

    return build


def _plan(client: FlaskClient, auth: dict[str, str], *stages: int) -> dict[str, dict[str, Any]]:
    invoices = [
        invoice_row(invoice_id=f"INV-{stage}", due_date=DUE_FOR_STAGE[stage], row=stage)
        for stage in stages
    ]
    response = client.post("/v1/plan", json={"today": TODAY, "invoices": invoices}, headers=auth)
    assert response.status_code == 200, response.get_data(as_text=True)
    return {row["invoice_id"]: row for row in response.get_json()["rows"]}


def test_an_attribute_a_merge_value_lacks_makes_the_row_an_error_not_a_blank(
    templates_with: Callable[[int, str], FlaskClient], auth: dict[str, str]
) -> None:
    client = templates_with(
        7,
        "Subject: Invoice {{ invoice_id }} is overdue\n"
        "\n"
        "Hi {{ name }},\n"
        "\n"
        "{{ balance_formatted.amount }} is still open on invoice {{ invoice_id }}.\n",
    )

    rows = _plan(client, auth, 7, 21)

    broken = rows["INV-7"]
    assert (broken["action"], broken["reason"], broken["stage"]) == ("error", "template_error", 7)
    assert broken["row"] == 7
    assert broken["message"].strip()
    assert "amount" in " ".join([broken["message"], *broken.get("errors", {}).values()])
    assert not broken.get("body") and not broken.get("subject")
    fine = rows["INV-21"]  # one broken stage costs the other stages nothing
    assert (fine["action"], fine["stage"]) == ("draft", 21)
    assert "INV-21" in fine["subject"] and "Ann Client" in fine["body"]


def test_an_unknown_merge_field_is_a_load_error_reported_by_get_templates(
    templates_with: Callable[[int, str], FlaskClient], auth: dict[str, str]
) -> None:
    client = templates_with(14, "Subject: Invoice {{ invoice_id }}\n\nDear {{ nope }},\n")

    response = client.get("/v1/templates", headers=auth)

    assert response.status_code == 200
    body = response.get_json()
    assert set(body["errors"]) == {"14"}
    assert "nope" in body["errors"]["14"]
    by_stage = {t["stage"]: t for t in body["templates"]}
    assert by_stage[14]["ok"] is False
    assert "nope" in by_stage[14]["error"]
    assert all(t["ok"] for stage, t in by_stage.items() if stage != 14)
    # A row at that stage is an error row too, with the load error as its reason.
    rows = _plan(client, auth, 14, 7)
    assert (rows["INV-14"]["action"], rows["INV-14"]["reason"]) == ("error", "template_error")
    assert "nope" in rows["INV-14"]["message"] + " ".join(rows["INV-14"].get("errors", {}).values())
    assert rows["INV-7"]["action"] == "draft"
