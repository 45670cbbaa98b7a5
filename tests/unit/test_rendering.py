"""Stage templates: linting at load, sandboxing, merge fields, Babel formatting."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.config import PROJECT_ROOT
from service.domain.decide import DEFAULT_STAGES
from service.domain.invoice import Invoice
from service.rendering import (
    RenderSettings,
    TemplateLoadError,
    TemplateSet,
    merge_fields,
    one_line,
)

SHIPPED = PROJECT_ROOT / "templates"


def invoice(**kw: object) -> Invoice:
    base: dict[str, object] = {
        "invoice_id": "INV-7",
        "client_name": "Ann",
        "client_emails": ("ann@client.example.com",),
        "amount": Decimal("1234.5"),
        "currency": "USD",
        "due_date": dt.date(2025, 1, 15),
    }
    base.update(kw)
    return Invoice(**base)  # type: ignore[arg-type]


def fields(
    inv: Invoice, stage: int = 7, locale: str = "en_US", link: str = ""
) -> dict[str, object]:
    return merge_fields(
        inv,
        days_overdue=stage,
        stage=stage,
        settings=RenderSettings(locale=locale, sender_name="Acme Ltd"),
        payment_link=link,
    )


def write(dir_: Path, stage: int, text: str) -> None:
    (dir_ / f"stage_{stage:02d}.txt").write_text(text, encoding="utf-8")


def test_shipped_templates_all_load_cleanly() -> None:
    templates = TemplateSet(SHIPPED, DEFAULT_STAGES)
    assert templates.errors == {}


@pytest.mark.parametrize("stage", DEFAULT_STAGES)
def test_every_shipped_stage_names_the_invoice_and_balance(stage: int) -> None:
    email = TemplateSet(SHIPPED, DEFAULT_STAGES).render(stage, fields(invoice(), stage))
    assert "INV-7" in email.subject
    assert "$1,234.50" in email.body
    assert email.body.startswith(("Hi Ann,", "Dear Ann,"))
    assert "Acme Ltd" in email.body
    assert "{{" not in email.body and "None" not in email.body


def test_tone_escalates_from_friendly_to_last_notice() -> None:
    templates = TemplateSet(SHIPPED, DEFAULT_STAGES)
    first = templates.render(7, fields(invoice()))
    last = templates.render(42, fields(invoice(), 42))
    assert "friendly" in first.subject.lower()
    assert "last notice" in last.subject.lower() and "collections" in last.body.lower()


def test_payment_link_appears_only_when_present() -> None:
    templates = TemplateSet(SHIPPED, DEFAULT_STAGES)
    assert "http" not in templates.render(14, fields(invoice(), 14)).body
    body = templates.render(14, fields(invoice(), 14, link="https://pay.example.com/x")).body
    assert "https://pay.example.com/x" in body


def test_partial_payment_shows_the_open_balance() -> None:
    body = (
        TemplateSet(SHIPPED, DEFAULT_STAGES)
        .render(7, fields(invoice(amount_paid=Decimal("234.50"))))
        .body
    )
    assert "$1,234.50" in body and "$1,000.00" in body


def test_merge_data_is_data_never_template_code() -> None:
    email = TemplateSet(SHIPPED, DEFAULT_STAGES).render(
        7, fields(invoice(client_name="{{ 7*7 }}", invoice_id="{% raw %}"))
    )
    assert "{{ 7*7 }}" in email.body and "49" not in email.body
    assert "{% raw %}" in email.subject


def test_unknown_merge_field_is_an_error_at_load_not_a_blank(tmp_path: Path) -> None:
    write(tmp_path, 7, "Subject: Hi {{ nmae }}\n\nDear {{ name }}")
    templates = TemplateSet(tmp_path, (7,))
    assert "nmae" in templates.errors[7]
    with pytest.raises(TemplateLoadError, match="nmae"):
        templates.render(7, fields(invoice()))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hi {{ name }}", "Subject"),
        ("Subject: x\nno blank line", "blank line"),
        ("Subject: {{ name \n\nbody", "TemplateSyntaxError"),
    ],
)
def test_malformed_templates_are_reported(tmp_path: Path, text: str, expected: str) -> None:
    write(tmp_path, 7, text)
    assert expected in TemplateSet(tmp_path, (7,)).errors[7]


def test_missing_template_file_is_reported(tmp_path: Path) -> None:
    assert "missing" in TemplateSet(tmp_path, (7,)).errors[7]


def test_sandbox_refuses_python_internals(tmp_path: Path) -> None:
    write(tmp_path, 7, "Subject: x\n\n{{ name.__class__.__mro__ }}")
    templates = TemplateSet(tmp_path, (7,))
    with pytest.raises(Exception, match=r"unsafe|attribute"):
        templates.render(7, fields(invoice()))


def test_money_and_dates_follow_the_locale() -> None:
    f = fields(invoice(currency="EUR"), locale="de_DE")
    assert f["amount_formatted"] == "1.234,50\xa0€"
    assert f["due_date"] == "15.01.2025"
    jpy = fields(invoice(currency="JPY", amount=Decimal(185000)))
    assert jpy["amount_formatted"] == "¥185,000"


def test_subject_never_carries_a_newline_from_merge_data() -> None:
    email = TemplateSet(SHIPPED, DEFAULT_STAGES).render(
        7, fields(invoice(invoice_id="A\r\nBcc: x@y.z"))
    )
    assert "\n" not in email.subject and "\r" not in email.subject


@given(st.text(st.sampled_from(" \t\r\n\x0b\x0c\x85\xa0\u2028\u3000ab")) | st.text())
def test_one_line_collapses_whitespace_exactly_as_split_and_join(subject: str) -> None:
    assert one_line(subject) == " ".join(subject.split())
