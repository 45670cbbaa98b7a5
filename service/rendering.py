"""Stage templates: loading and linting at start-up, rendering per invoice.

Templates run in Jinja2's sandbox with StrictUndefined: a template can read only the merge
fields below and cannot reach Python internals, and an unknown field is an error when the
templates load — never a blank in a client's email. Merge values are data: Jinja never
re-evaluates a value, so a client called ``{{ 7*7 }}`` is greeted literally.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from babel.dates import format_date
from jinja2 import StrictUndefined, TemplateError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from service.domain.invoice import Invoice
from service.domain.money import amount_texts
from service.skeletons import SkeletonTemplate

# Every name a template may use (DESIGN §5). Adding one here makes it available everywhere.
MERGE_FIELDS = frozenset(
    {
        "name",
        "client_name",
        "invoice_id",
        "amount",
        "amount_formatted",
        "balance",
        "balance_formatted",
        "currency",
        "due_date",
        "sent_date",
        "days_overdue",
        "stage",
        "partially_paid",
        "sender_name",
        "payment_link",
        "notes",
    }
)


_SEP = "\x00"


class TemplateLoadError(Exception):
    """Raised when templates are required but some failed to load."""


class RenderedEmail(NamedTuple):
    subject: str
    body: str


@dataclass(frozen=True)
class StageTemplate:
    """One stage's template, compiled, or the reason it could not be."""

    stage: int
    path: Path
    source: str
    error: str | None
    fields: frozenset[str]


@dataclass(frozen=True)
class RenderSettings:
    locale: str = "en_US"
    sender_name: str = ""


def _split(source: str) -> tuple[str, str]:
    first, sep, rest = source.partition("\n")
    if not first.startswith("Subject:"):
        raise ValueError("the first line must be 'Subject: …'")
    if not sep or not rest.startswith("\n"):
        raise ValueError("a blank line must follow the Subject line")
    return first[len("Subject:") :].strip(), rest[1:]


class TemplateSet:
    """The six (or configured) stage templates, compiled once and linted at load."""

    def __init__(self, directory: Path, stages: Sequence[int]) -> None:
        self.directory = directory
        self._env = ImmutableSandboxedEnvironment(
            undefined=StrictUndefined,
            autoescape=False,  # plain-text email, not HTML
            keep_trailing_newline=True,
            trim_blocks=True,
        )
        # No globals (range, dict, lipsum, …): templates need only their merge fields, and an
        # empty globals map makes each render skip merging them (a 100k-row plan renders a lot).
        self._env.globals.clear()
        self.templates: dict[int, StageTemplate] = {}
        self._compiled: dict[int, SkeletonTemplate] = {}
        for stage in stages:
            self._load(stage)

    def _load(self, stage: int) -> None:
        path = self.directory / f"stage_{stage:02d}.txt"
        source = ""
        error: str | None = None
        fields: frozenset[str] = frozenset()
        try:
            source = path.read_text(encoding="utf-8").replace("\r\n", "\n")
            subject, body = _split(source)
            used: set[str] = set()
            for part in (subject, body):
                used |= meta.find_undeclared_variables(self._env.parse(part))
            unknown = sorted(used - MERGE_FIELDS)
            if unknown:
                raise ValueError(f"unknown merge field(s): {', '.join(unknown)}")
            fields = frozenset(used)
            # One template per stage, subject and body joined by NUL (which merge values never
            # contain): one render per draft instead of two.
            self._compiled[stage] = SkeletonTemplate(self._env, subject + _SEP + body, MERGE_FIELDS)
        except FileNotFoundError:
            error = f"missing template file {path.name}"
        except (OSError, UnicodeDecodeError) as exc:
            error = f"cannot read {path.name}: {exc}"
        except TemplateError as exc:
            error = f"{path.name}: {exc.__class__.__name__}: {exc}"
        except ValueError as exc:
            error = f"{path.name}: {exc}"
        self.templates[stage] = StageTemplate(stage, path, source, error, fields)

    @property
    def errors(self) -> dict[int, str]:
        """Load errors by stage; empty when every template is usable."""
        return {s: t.error for s, t in self.templates.items() if t.error}

    def is_usable(self, stage: int) -> bool:
        """True when the stage's template loaded cleanly."""
        return stage in self._compiled

    def render(self, stage: int, fields: Mapping[str, object]) -> RenderedEmail:
        """Render one stage; raises TemplateLoadError for a stage whose template is broken."""
        compiled = self._compiled.get(stage)
        if compiled is None:
            reason = self.errors.get(stage, f"no template for stage {stage}")
            raise TemplateLoadError(reason)
        subject, _, body = compiled.render(fields).partition(_SEP)
        return RenderedEmail(one_line(subject), body)


def one_line(subject: str) -> str:
    """A subject is one header line: collapse any newline (or run of spaces) a merge value
    smuggled in, and trim it."""
    if subject.isprintable() and "  " not in subject and subject[:1] != " " != subject[-1:]:
        return subject  # nothing to collapse (the usual case): skip splitting and joining
    return " ".join(subject.split())


@lru_cache(maxsize=4096)
def _format_date(day: dt.date, locale: str) -> str:
    return format_date(day, format="medium", locale=locale)


def merge_fields(
    invoice: Invoice,
    *,
    days_overdue: int,
    stage: int,
    settings: RenderSettings,
    payment_link: str = "",
) -> dict[str, object]:
    """The values a template sees for one invoice, formatted for the configured locale."""
    locale = settings.locale
    texts = amount_texts(invoice.currency, locale)
    amount, amount_formatted = texts(invoice.amount)
    if invoice.amount_paid:
        balance, balance_formatted = texts(invoice.balance)
    else:  # most invoices: nothing paid yet, the balance is the amount
        balance, balance_formatted = amount, amount_formatted
    return {
        "name": invoice.client_name,
        "client_name": invoice.client_name,
        "invoice_id": invoice.invoice_id,
        "amount": amount,
        "amount_formatted": amount_formatted,
        "balance": balance,
        "balance_formatted": balance_formatted,
        "currency": invoice.currency,
        "due_date": _format_date(invoice.due_date, locale),
        "sent_date": _format_date(invoice.sent_date, locale) if invoice.sent_date else "",
        "days_overdue": days_overdue,
        "stage": stage,
        "partially_paid": invoice.amount_paid > 0,
        "sender_name": settings.sender_name,
        "payment_link": payment_link,
        "notes": invoice.notes,
    }
