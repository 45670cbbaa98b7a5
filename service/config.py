"""One Settings object built from the environment (and `.env`), validated once.

Nothing else in the service reads the environment: entry points call `load_settings()` and
pass the result down. environs parses each variable (a variable `X` sets the field `x`); names
follow DESIGN §9 and `.env.example` documents the ones a user may need.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from dotenv import dotenv_values
from environs import Env, ValidationError
from environs import validate as check
from environs.exceptions import EnvValidationError

from service.domain.decide import DEFAULT_CLOSED_STATUSES, DEFAULT_STAGES, Policy
from service.domain.invoice import INPUT_FIELDS, OUTPUT_FIELDS, ParseOptions
from service.domain.money import is_known_currency
from service.rendering import RenderSettings

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """Every knob of the service, typed."""

    api_keys: tuple[str, ...] = ()
    database_url: str = ""
    drafts_backend: str = "maildir"
    maildir_path: Path = PROJECT_ROOT / "var" / "Maildir"
    invoices_file: Path = PROJECT_ROOT / "examples" / "invoices.csv"
    templates_dir: Path = PROJECT_ROOT / "templates"
    timezone: str = "UTC"
    locale: str = "en_US"
    default_currency: str = "USD"
    date_format: str | None = None
    column_map: Mapping[str, str] = field(default_factory=dict)
    stages: tuple[int, ...] = DEFAULT_STAGES
    closed_statuses: frozenset[str] = DEFAULT_CLOSED_STATUSES
    min_gap_days: int = 0
    gmail_sender: str = ""
    sender_name: str = "The accounts team"
    sender_domain: str = "invoice-collector.local"
    google_sheets_spreadsheet_id: str = ""
    google_sheets_range: str = "Invoices!A1:Z"
    google_token_file: Path | None = None
    google_service_account_file: Path | None = None
    gmail_api_endpoint: str | None = None
    sheets_api_endpoint: str | None = None
    dry_run: bool = True
    window_start: int = 0
    window_end: int = 24
    thread_followups: bool = False
    reservation_lease_seconds: float = 120.0
    gmail_drafts_per_second: float = 24.5  # Gmail's 25/s ceiling less a 2% margin
    gmail_retry_seconds: float = 60.0
    draft_concurrency: int = 4
    max_request_bytes: int = 16 * 1024 * 1024
    max_rows_per_request: int = 100_000
    rate_limit_per_minute: int = 0  # 0 = off
    auth_failures_per_minute: int = 20  # per client address
    proxy_hops: int = 0  # proxies in front whose X-Forwarded-For is trusted
    drafts_time_budget_seconds: float = 20.0  # below gunicorn's 60 s worker timeout
    sends_log: Path | None = PROJECT_ROOT / "logs" / "sends.csv"
    log_level: str = "INFO"
    slack_webhook_url: str | None = None
    slack_min_amount: Decimal = Decimal(0)
    stripe_api_key: str | None = None
    stripe_api_base: str | None = None  # e.g. a stripe-mock URL for tests
    qbo_realm_id: str = ""
    qbo_client_id: str = ""
    qbo_client_secret: str = ""
    qbo_refresh_token: str = ""
    qbo_api_base: str = "https://quickbooks.api.intuit.com"  # sandbox: sandbox-quickbooks…
    qbo_token_url: str = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"  # noqa: S105
    # Intuit rotates refresh tokens: the newest one is kept here so a restart can still refresh.
    qbo_token_file: Path = PROJECT_ROOT / "var" / "qbo_token.json"
    google_client_id: str | None = None
    allowed_google_identities: tuple[str, ...] = ()
    # Where Google publishes the keys that sign ID tokens (x509 PEM by key id); tests override.
    google_certs_url: str = "https://www.googleapis.com/oauth2/v1/certs"

    @property
    def policy(self) -> Policy:
        """The decision settings."""
        return Policy(self.stages, self.closed_statuses, self.min_gap_days)

    @property
    def parse_options(self) -> ParseOptions:
        """How rows are read."""
        return ParseOptions(self.default_currency, self.date_format, self.column_map)

    @property
    def render_settings(self) -> RenderSettings:
        """How emails are formatted."""
        return RenderSettings(locale=self.locale, sender_name=self.sender_name)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every configured secret, to be masked should one reach a log line."""
        values = (
            self.stripe_api_key,
            self.slack_webhook_url,
            self.qbo_client_secret,
            self.qbo_refresh_token,
        )
        return tuple(value for value in values if value)

    @property
    def effective_database_url(self) -> str:
        """DATABASE_URL, or a SQLite file beside the Maildir (the embedded default)."""
        return self.database_url or f"sqlite:///{PROJECT_ROOT / 'var' / 'ledger.db'}"

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some settings replaced (tests, CLI flags)."""
        return replace(self, **changes)


_TEXT = (
    "DATABASE_URL", "DATE_FORMAT", "GMAIL_SENDER", "SENDER_NAME", "SENDER_DOMAIN", "LOG_LEVEL",
    "GOOGLE_SHEETS_SPREADSHEET_ID", "GOOGLE_SHEETS_RANGE", "GMAIL_API_ENDPOINT",
    "SHEETS_API_ENDPOINT", "GOOGLE_CLIENT_ID", "GOOGLE_CERTS_URL", "SLACK_WEBHOOK_URL",
    "STRIPE_API_KEY", "STRIPE_API_BASE", "QBO_REALM_ID", "QBO_CLIENT_ID", "QBO_CLIENT_SECRET",
    "QBO_REFRESH_TOKEN", "QBO_API_BASE", "QBO_TOKEN_URL",
)  # fmt: skip
_PATHS = (
    "MAILDIR_PATH", "INVOICES_FILE", "TEMPLATES_DIR", "GOOGLE_TOKEN_FILE",
    "GOOGLE_SERVICE_ACCOUNT_FILE", "QBO_TOKEN_FILE", "SENDS_LOG",
)  # fmt: skip
_LISTS = ("API_KEYS", "ALLOWED_GOOGLE_IDENTITIES", "CLOSED_STATUSES")
_BOUNDED = {
    "MIN_GAP_DAYS": (0, 365),
    "WINDOW_START": (0, 23),
    "WINDOW_END": (1, 24),
    "DRAFT_CONCURRENCY": (1, 32),
    "MAX_REQUEST_BYTES": (1024, 1 << 31),
    "MAX_ROWS_PER_REQUEST": (1, 10_000_000),
    "RATE_LIMIT_PER_MINUTE": (0, 1_000_000),
    "AUTH_FAILURES_PER_MINUTE": (1, 1_000_000),
    "PROXY_HOPS": (0, 10),
}
_POSITIVE = (
    "RESERVATION_LEASE_SECONDS", "GMAIL_DRAFTS_PER_SECOND", "GMAIL_RETRY_SECONDS",
    "DRAFTS_TIME_BUDGET_SECONDS",
)  # fmt: skip
_FIELDS = sorted(INPUT_FIELDS + OUTPUT_FIELDS)


class _MappingEnv(Env):
    """environs reading the mapping it is given, never os.environ; blank counts as unset."""

    def __init__(self, source: Mapping[str, str]) -> None:
        super().__init__()
        self._source = source

    def _get_value(self, env_key: str, default: Any) -> Any:  # environs' one lookup
        return (self._source.get(env_key) or "").strip() or default


def _must(test: Callable[[Any], object], expected: str) -> Callable[[Any], None]:
    """A marshmallow validator: ``test(value)`` is true and raises nothing."""

    def validator(value: Any) -> None:
        try:
            ok = test(value)
        except (ValueError, LookupError, UnknownLocaleError):
            ok = False
        if not ok:
            raise ValidationError(f"expected {expected}")

    return validator


def _column_pair(entry: str) -> tuple[str, str]:
    ours, sep, theirs = (part.strip() for part in entry.partition("="))
    if not sep or ours not in _FIELDS or not theirs:
        raise ValidationError(
            f"expected entries like invoice_id=Invoice Number, not {entry.strip()!r} "
            f"(fields: {', '.join(_FIELDS)})"
        )
    return ours, theirs


def _reasons(messages: object) -> list[str]:
    """marshmallow's messages (a list, or a dict by list index) as flat text."""
    if isinstance(messages, Mapping):
        messages = list(messages.values())
    if isinstance(messages, list):
        return [text for message in messages for text in _reasons(message)]
    return [str(messages)]


def timezone_or_error(name: str) -> ZoneInfo:
    """The IANA zone, or ConfigError naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{name!r} is not an IANA timezone such as Europe/London") from None


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """Build and validate Settings from ``env`` alone (os.environ is not read)."""
    read, default, s = _MappingEnv(env), Settings(), dict[str, Any]()

    def put(name: str, parse: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            s[name.lower()] = parse(name, getattr(default, name.lower()), *args, **kwargs)
        except EnvValidationError as error:
            why = " ".join(dict.fromkeys(_reasons(error.error_messages)))
            raise ConfigError(f"{name}: {why} (got {env.get(name, '').strip()!r})") from None

    for name in _TEXT:
        put(name, read.str)
    for name in _PATHS:
        put(name, read.path)
    for name in _LISTS:
        put(name, read.list, str.strip)
    for name, (lo, hi) in _BOUNDED.items():
        put(name, read.int, validate=check.Range(lo, hi))
    for name in _POSITIVE:
        put(name, read.float, validate=check.Range(0, min_inclusive=False))
    for name in ("DRY_RUN", "THREAD_FOLLOWUPS"):
        put(name, read.bool)
    put("SLACK_MIN_AMOUNT", read.decimal)
    put("DRAFTS_BACKEND", read.str, validate=check.OneOf(("gmail", "maildir")))
    put("TIMEZONE", read.str, validate=_must(timezone_or_error, "an IANA zone like Europe/Paris"))
    put("LOCALE", read.str, validate=_must(Locale.parse, "a locale such as en_US or de_DE"))
    currency = _must(lambda code: is_known_currency(code.upper()), "an ISO 4217 code like EUR")
    put("DEFAULT_CURRENCY", read.str, validate=currency)
    stages = _must(lambda days: min(days) > 0, "positive day counts like 7,14,21")
    put("STAGES", read.list, int, validate=stages)
    put("COLUMN_MAP", read.list, _column_pair)

    for key in ("api_keys", "allowed_google_identities", "closed_statuses"):
        s[key] = tuple(item for item in s[key] if item)
    s["allowed_google_identities"] = tuple(x.lower() for x in s["allowed_google_identities"])
    s["default_currency"] = s["default_currency"].upper()
    s["column_map"] = dict(s["column_map"])
    for key in (name.lower() for name in _PATHS):
        s[key] = s[key] and s[key].expanduser()
    if str(s["sends_log"]).lower() in {"off", "none"}:
        s["sends_log"] = None
    # The domain's own rules sort the stages and normalise statuses (Written-Off = written off).
    policy = Policy(tuple(s["stages"]), frozenset(s["closed_statuses"]), s["min_gap_days"])
    s.update(stages=policy.stages, closed_statuses=policy.closed_statuses)

    if s["window_start"] >= s["window_end"]:
        raise ConfigError("WINDOW_START must be earlier than WINDOW_END")
    return Settings(**s)


def load_settings(env: Mapping[str, str] | None = None, dotenv: Path | None = None) -> Settings:
    """Settings from ``env`` (default: the process environment, after loading `.env`)."""
    if env is None:
        path = dotenv or Path.cwd() / ".env"
        merged = {k: v for k, v in dotenv_values(path).items() if v is not None}
        merged.update(os.environ)  # the real environment wins over .env, as with docker/systemd
        env = merged
    return settings_from_env(env)
