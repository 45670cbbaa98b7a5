"""Stage templates: loading and linting at start-up, rendering per invoice.

Templates run in Jinja2's sandbox with StrictUndefined: a template can read only the merge
fields below and cannot reach Python internals, and an unknown field is an error when the
templates load — never a blank in a client's email. Merge values are data: Jinja never
re-evaluates a value, so a client called ``{{ 7*7 }}`` is greeted literally.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

from jinja2 import StrictUndefined, Template, TemplateError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from service.domain.dates import format_date
from service.domain.invoice import Invoice
from service.domain.money import format_money, format_number


@dataclass(frozen=True)
class RenderSettings:
    locale: str = "en_US"
    sender_name: str = ""


@dataclass(frozen=True)
class _Merge:
    invoice: Invoice
    days_overdue: int
    stage: int
    settings: RenderSettings
    payment_link: str

    @cached_property
    def amount_formatted(self) -> str:
        return format_money(self.invoice.amount, self.invoice.currency, self.settings.locale)

    def balance_formatted(self) -> str:
        # Most invoices have no payment yet: their balance is the amount, formatted once.
        if self.invoice.amount_paid:
            return format_money(self.invoice.balance, self.invoice.currency, self.settings.locale)
        return self.amount_formatted

    def date(self, day: dt.date | None) -> str:
        return format_date(day, self.settings.locale) if day else ""


# Every name a template may use (DESIGN §5) and its value for one invoice. Adding one here makes
# it available everywhere.
_MERGE: dict[str, Callable[[_Merge], object]] = {
    "name": lambda m: m.invoice.client_name,
    "client_name": lambda m: m.invoice.client_name,
    "invoice_id": lambda m: m.invoice.invoice_id,
    "amount": lambda m: format_number(m.invoice.amount, m.settings.locale),
    "amount_formatted": lambda m: m.amount_formatted,
    "balance": lambda m: format_number(m.invoice.balance, m.settings.locale),
    "balance_formatted": _Merge.balance_formatted,
    "currency": lambda m: m.invoice.currency,
    "due_date": lambda m: m.date(m.invoice.due_date),
    "sent_date": lambda m: m.date(m.invoice.sent_date),
    "days_overdue": lambda m: m.days_overdue,
    "stage": lambda m: m.stage,
    "partially_paid": lambda m: bool(m.invoice.amount_paid),
    "sender_name": lambda m: m.settings.sender_name,
    "payment_link": lambda m: m.payment_link,
    "notes": lambda m: m.invoice.notes,
    "promised_date": lambda m: m.date(m.invoice.promised_date),
}
MERGE_FIELDS = frozenset(_MERGE)


def template_name(stage: int) -> str:
    """``stage_07.txt``; a courtesy stage before the due date (-3) is ``stage_pre_03.txt``."""
    return f"stage_{stage:02d}.txt" if stage > 0 else f"stage_pre_{-stage:02d}.txt"


class TemplateLoadError(Exception):
    """Raised when templates are required but some failed to load."""


class RenderedEmail(NamedTuple):
    subject: str
    body: str


@dataclass(frozen=True)
class StageTemplate:
    """One stage's template, compiled, or the reason it could not be."""

    path: Path
    source: str
    error: str | None
    fields: frozenset[str]


def _split(source: str) -> tuple[str, str]:
    first, sep, rest = source.partition("\n")
    if not first.startswith("Subject:"):
        raise ValueError("the first line must be 'Subject: …'")
    if not sep or not rest.startswith("\n"):
        raise ValueError("a blank line must follow the Subject line")
    return first[len("Subject:") :].strip(), rest[1:]


# What the statement template (one client's invoices in one email) may read: statement_fields.
STATEMENT_FIELDS = frozenset(
    {"name", "client_name", "stage", "days_overdue", "invoices", "totals", "sender_name"}
)
STATEMENT_FILE = "statement.txt"


class TemplateSet:
    """The configured stage templates and the statement template, compiled and linted once."""

    def __init__(self, directory: Path, stages: Sequence[int]) -> None:
        self.directory = directory
        self._env = ImmutableSandboxedEnvironment(
            undefined=StrictUndefined,
            autoescape=False,  # plain-text email, not HTML
            keep_trailing_newline=True,
            trim_blocks=True,
        )
        # No globals (range, dict, lipsum, …): templates need only their merge fields.
        self._env.globals.clear()
        self._compiled: dict[int, tuple[Template, Template]] = {}
        self.templates = {s: self._load(s, template_name(s), MERGE_FIELDS) for s in stages}
        self.statement = self._load(0, STATEMENT_FILE, STATEMENT_FIELDS)

    def _load(self, stage: int, name: str, allowed: frozenset[str]) -> StageTemplate:
        path = self.directory / name
        source = ""
        error: str | None = None
        fields: frozenset[str] = frozenset()
        try:
            source = path.read_text(encoding="utf-8").replace("\r\n", "\n")
            subject, body = _split(source)
            used = meta.find_undeclared_variables(self._env.parse(subject))
            used |= meta.find_undeclared_variables(self._env.parse(body))
            unknown = sorted(used - allowed)
            if unknown:
                raise ValueError(f"unknown merge field(s): {', '.join(unknown)}")
            fields = frozenset(used)
            self._compiled[stage] = (self._env.from_string(subject), self._env.from_string(body))
        except FileNotFoundError:
            error = f"missing template file {path.name}"
        except (OSError, UnicodeDecodeError) as exc:
            error = f"cannot read {path.name}: {exc}"
        except TemplateError as exc:
            error = f"{path.name}: {exc.__class__.__name__}: {exc}"
        except ValueError as exc:
            error = f"{path.name}: {exc}"
        return StageTemplate(path, source, error, fields)

    @property
    def errors(self) -> dict[int, str]:
        """Load errors by stage; empty when every template is usable."""
        return {s: t.error for s, t in self.templates.items() if t.error}

    def fields_used(self, stage: int) -> frozenset[str]:
        """The merge fields the stage's template reads."""
        template = self.templates.get(stage)
        return template.fields if template is not None else frozenset()

    def render_statement(self, fields: Mapping[str, object]) -> RenderedEmail:
        """Render the statement template (its stage is 0: no reminder stage is)."""
        if self.statement.error:
            raise TemplateLoadError(self.statement.error)
        return self.render(0, fields)

    def render(self, stage: int, fields: Mapping[str, object]) -> RenderedEmail:
        """Render one stage; raises TemplateLoadError for a stage whose template is broken."""
        compiled = self._compiled.get(stage)
        if compiled is None:
            raise TemplateLoadError(self.errors.get(stage, f"no template for stage {stage}"))
        subject, body = compiled
        try:
            return RenderedEmail(one_line(subject.render(fields)), body.render(fields))
        except TemplateError as exc:
            # StrictUndefined: {{ amount.cents }} fails the row rather than blank a client's email.
            raise TemplateLoadError(f"stage {stage}: {exc.__class__.__name__}: {exc}") from None


def one_line(subject: str) -> str:
    """A subject is one header line: collapse any newline (or run of spaces) a merge value
    smuggled in, and trim it."""
    return " ".join(subject.split())


def merge_fields(
    invoice: Invoice,
    *,
    days_overdue: int,
    stage: int,
    settings: RenderSettings,
    payment_link: str = "",
    only: Collection[str] | None = None,
) -> dict[str, object]:
    """The values a template sees for one invoice, formatted for the configured locale; with
    ``only`` (the fields it uses), the rest is skipped: formatting is most of the cost."""
    m = _Merge(invoice, days_overdue, stage, settings, payment_link)
    return {name: value(m) for name, value in _MERGE.items() if only is None or name in only}


@dataclass(frozen=True)
class StatementLine:
    """One invoice of a statement: the invoice, how late it is, its stage and payment link."""

    invoice: Invoice
    days_overdue: int
    stage: int
    payment_link: str = ""


def statement_fields(lines: Sequence[StatementLine], settings: RenderSettings) -> dict[str, object]:
    """The values the statement template sees: one client's invoices and totals per currency."""
    locale = settings.locale
    first = lines[0].invoice
    totals: dict[str, Decimal] = {}
    for line in lines:
        currency = line.invoice.currency
        totals[currency] = totals.get(currency, Decimal(0)) + line.invoice.balance
    return {
        "name": first.client_name,
        "client_name": first.client_name,
        "stage": max(line.stage for line in lines),
        "days_overdue": max(line.days_overdue for line in lines),
        "sender_name": settings.sender_name,
        "invoices": [
            {
                "invoice_id": line.invoice.invoice_id,
                "due_date": format_date(line.invoice.due_date, locale),
                "days_overdue": line.days_overdue,
                "stage": line.stage,
                "currency": line.invoice.currency,
                "balance_formatted": format_money(
                    line.invoice.balance, line.invoice.currency, locale
                ),
                "payment_link": line.payment_link,
            }
            for line in lines
        ],
        "totals": [
            {"currency": code, "balance_formatted": format_money(total, code, locale)}
            for code, total in sorted(totals.items())
        ],
    }
