"""Structured JSON logs, with secrets redacted before a line is written.

Callers log ids and metadata in ``extra`` (invoice_id, stage, draft_id, row, counts, status
codes), never an email body, a rendered template or a token. As a second line of defence the
formatter masks anything that looks like a credential and drops ``extra`` keys that name a
body, but it cannot recognise a body passed in the message text itself.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

REDACTED = "[REDACTED]"
OMITTED = "[omitted: email content is never logged]"

# The attributes every LogRecord has; anything else on a record came in through ``extra``.
_RECORD_ATTRS = frozenset({*vars(logging.makeLogRecord({})), "message", "asctime", "taskName"})
# ``extra`` keys whose values are email content: dropped whatever they hold.
_BODY_KEYS = frozenset({"body", "html", "raw", "email_body", "html_body", "text_body", "mime"})
_SECRET_KEY = re.compile(
    r"(?i)(authorization|token|secret|password|passwd|api_?key|cookie|credential|webhook)"
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Header-shaped text: "Authorization: Basic abc", "'X-Google-Access-Token': 'ya29…'".
    (
        re.compile(
            r"(?i)\b((?:proxy-)?authorization|x-google-access-token|x-api-key|api[-_]?key)"
            r"""(["']?\s*[:=]\s*["']?)(?:(?:bearer|basic|token|digest)\s+)?[^\s"',;}]+"""
        ),
        rf"\1\2{REDACTED}",
    ),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9\-._~+/]+=*"), f"Bearer {REDACTED}"),
    # Google OAuth access tokens start "ya29.", refresh tokens "1//".
    (re.compile(r"\bya29\.[0-9A-Za-z\-_.]+"), REDACTED),
    (re.compile(r"(?<![\w/])1//[0-9A-Za-z\-_]{10,}"), REDACTED),
    # Stripe secret, restricted and webhook-signing keys.
    (re.compile(r"\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z]+|\bwhsec_[0-9A-Za-z]+"), REDACTED),
    # A Slack webhook URL is itself the credential; requests' errors quote only its path.
    (re.compile(r"/services/T[0-9A-Za-z]+/B[0-9A-Za-z]+/[0-9A-Za-z]+"), f"/services/{REDACTED}"),
)
# Shorter secrets are left: masking "abc" everywhere would wreck logs (config should refuse them).
MIN_SECRET_LENGTH = 8


class JsonFormatter(logging.Formatter):
    """One JSON line (ts, level, logger, msg, extras), credentials and bodies masked."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        literal = sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
        self._literal = re.compile("|".join(map(re.escape, literal))) if literal else None

    def redact(self, text: str) -> str:
        """``text`` with every credential replaced by [REDACTED]."""
        if self._literal is not None:
            text = self._literal.sub(REDACTED, text)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def redact_value(self, value: object, key: str = "") -> object:
        """A JSON-ready copy of an ``extra`` value with credentials and bodies removed."""
        if key.lower() in _BODY_KEYS:
            return OMITTED
        if key and _SECRET_KEY.search(key) and value not in (None, ""):
            return REDACTED
        if isinstance(value, bool | int | float) or value is None:
            return value
        if isinstance(value, Mapping):
            return {str(k): self.redact_value(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.redact_value(v) for v in value]
        return self.redact(str(value))  # a string, or anything else as its text

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line (tracebacks redacted too: exception text may quote a URL)."""
        # The record is rewritten in place, so no handler after this one sees a credential.
        record.msg = self.redact(record.getMessage())
        record.args = None
        when = dt.datetime.fromtimestamp(record.created, tz=dt.UTC)
        payload: dict[str, Any] = {
            "ts": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.msg,
        }
        for key, value in list(vars(record).items()):
            if key not in _RECORD_ATTRS:
                setattr(record, key, self.redact_value(value, key))
                payload.setdefault(key, getattr(record, key))
        if record.exc_info:
            payload["exc"] = self.redact(self.formatException(record.exc_info))
        if record.stack_info:
            payload["stack"] = self.redact(self.formatStack(record.stack_info))
        return json.dumps(payload, ensure_ascii=False, default=str)


def configure_logging(
    level: str = "INFO", secrets: Iterable[str] = (), stream: TextIO | None = None
) -> None:
    """Log every record to ``stream`` (default: stdout) as redacted JSON; safe to call again."""
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}")
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter(secrets))
    handler.set_name("invoice_collector_json")
    root = logging.getLogger()
    # Replace only our own handler: test runners and servers may have attached theirs.
    for old in [h for h in root.handlers if h.get_name() == "invoice_collector_json"]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(numeric)
    # Alembic narrates every start-up migration check at INFO; only its problems matter here.
    logging.getLogger("alembic").setLevel(max(numeric, logging.WARNING))
