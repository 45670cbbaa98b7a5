"""One Settings object built from the environment (and `.env`), validated once.

Nothing else in the service reads the environment: entry points call `load_settings()` and
pass the result down. Names follow DESIGN §9; `.env.example` documents each one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError

from service.domain.decide import DEFAULT_CLOSED_STATUSES, DEFAULT_STAGES, Policy
from service.domain.invoice import INPUT_FIELDS, OUTPUT_FIELDS, ParseOptions
from service.domain.money import is_known_currency
from service.parallel import Sharing, available_cpus
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
    plan_processes: int = 0  # 0 = every core this process may use
    plan_share_min_rows: int = 4000
    rate_limit_per_minute: int = 0  # 0 = off
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
    def plan_sharing(self) -> Sharing:
        """How many processes plan one large request."""
        return Sharing(self.plan_processes or available_cpus(), self.plan_share_min_rows)

    @property
    def render_settings(self) -> RenderSettings:
        """How emails are formatted."""
        return RenderSettings(locale=self.locale, sender_name=self.sender_name)

    @property
    def effective_database_url(self) -> str:
        """DATABASE_URL, or a SQLite file beside the Maildir (the embedded default)."""
        return self.database_url or f"sqlite:///{PROJECT_ROOT / 'var' / 'ledger.db'}"

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some settings replaced (tests, CLI flags)."""
        return replace(self, **changes)


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}")


def _int(name: str, raw: str, lo: int, hi: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, not {value}")
    return value


def _float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive")
    return value


def _list(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.replace(";", ",").split(",") if part.strip())


def _column_map(raw: str) -> dict[str, str]:
    known = set(INPUT_FIELDS + OUTPUT_FIELDS)
    mapping: dict[str, str] = {}
    for pair in _list(raw):
        ours, sep, theirs = pair.partition("=")
        ours = ours.strip()
        if not sep or ours not in known or not theirs.strip():
            raise ConfigError(
                f"COLUMN_MAP entries look like invoice_id=Invoice Number; {pair!r} is not one "
                f"(known fields: {', '.join(sorted(known))})"
            )
        mapping[ours] = theirs.strip()
    return mapping


def timezone_or_error(name: str) -> ZoneInfo:
    """The IANA zone, or ConfigError naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{name!r} is not an IANA timezone such as Europe/London") from None


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """Build and validate Settings from an environment mapping."""
    s: dict[str, Any] = {}

    def get(name: str) -> str | None:
        value = env.get(name)
        return value if value not in (None, "") else None

    if (v := get("API_KEYS")) is not None:
        s["api_keys"] = _list(v)
    if (v := get("DATABASE_URL")) is not None:
        s["database_url"] = v
    if (v := get("DRAFTS_BACKEND")) is not None:
        if v not in {"gmail", "maildir"}:
            raise ConfigError(f"DRAFTS_BACKEND must be gmail or maildir, not {v!r}")
        s["drafts_backend"] = v
    for name, key in (
        ("MAILDIR_PATH", "maildir_path"),
        ("INVOICES_FILE", "invoices_file"),
        ("TEMPLATES_DIR", "templates_dir"),
        ("GOOGLE_TOKEN_FILE", "google_token_file"),
        ("GOOGLE_SERVICE_ACCOUNT_FILE", "google_service_account_file"),
        ("QBO_TOKEN_FILE", "qbo_token_file"),
    ):
        if (v := get(name)) is not None:
            s[key] = Path(v).expanduser()
    if (v := get("SENDS_LOG")) is not None:
        s["sends_log"] = None if v.lower() in {"off", "none"} else Path(v).expanduser()
    if (v := get("TIMEZONE")) is not None:
        timezone_or_error(v)
        s["timezone"] = v
    if (v := get("LOCALE")) is not None:
        try:
            Locale.parse(v)
        except (UnknownLocaleError, ValueError):
            raise ConfigError(f"LOCALE {v!r} is not a locale such as en_US or de_DE") from None
        s["locale"] = v
    if (v := get("DEFAULT_CURRENCY")) is not None:
        if not is_known_currency(v.upper()):
            raise ConfigError(f"DEFAULT_CURRENCY {v!r} is not an ISO 4217 code")
        s["default_currency"] = v.upper()
    if (v := get("DATE_FORMAT")) is not None:
        s["date_format"] = v
    if (v := get("COLUMN_MAP")) is not None:
        s["column_map"] = _column_map(v)
    if (v := get("STAGES")) is not None:
        try:
            stages = tuple(sorted({int(x) for x in _list(v)}))
        except ValueError:
            raise ConfigError(f"STAGES must be day counts like 7,14,21, not {v!r}") from None
        if not stages or stages[0] <= 0:
            raise ConfigError("STAGES must be positive day counts")
        s["stages"] = stages
    if (v := get("CLOSED_STATUSES")) is not None:
        s["closed_statuses"] = frozenset(x.lower() for x in _list(v))
    if (v := get("MIN_GAP_DAYS")) is not None:
        s["min_gap_days"] = _int("MIN_GAP_DAYS", v, 0, 365)
    for name, key in (
        ("GMAIL_SENDER", "gmail_sender"),
        ("SENDER_NAME", "sender_name"),
        ("SENDER_DOMAIN", "sender_domain"),
        ("GOOGLE_SHEETS_SPREADSHEET_ID", "google_sheets_spreadsheet_id"),
        ("GOOGLE_SHEETS_RANGE", "google_sheets_range"),
        ("LOG_LEVEL", "log_level"),
    ):
        if (v := get(name)) is not None:
            s[key] = v.strip()
    for name, key in (
        ("GMAIL_API_ENDPOINT", "gmail_api_endpoint"),
        ("SHEETS_API_ENDPOINT", "sheets_api_endpoint"),
        ("SLACK_WEBHOOK_URL", "slack_webhook_url"),
        ("STRIPE_API_KEY", "stripe_api_key"),
        ("STRIPE_API_BASE", "stripe_api_base"),
        ("QBO_REALM_ID", "qbo_realm_id"),
        ("QBO_CLIENT_ID", "qbo_client_id"),
        ("QBO_CLIENT_SECRET", "qbo_client_secret"),
        ("QBO_REFRESH_TOKEN", "qbo_refresh_token"),
        ("QBO_API_BASE", "qbo_api_base"),
        ("QBO_TOKEN_URL", "qbo_token_url"),
        ("GOOGLE_CLIENT_ID", "google_client_id"),
        ("GOOGLE_CERTS_URL", "google_certs_url"),
    ):
        if (v := get(name)) is not None:
            s[key] = v.strip()
    if (v := get("ALLOWED_GOOGLE_IDENTITIES")) is not None:
        s["allowed_google_identities"] = tuple(x.lower() for x in _list(v))
    if (v := get("DRY_RUN")) is not None:
        s["dry_run"] = _bool("DRY_RUN", v)
    if (v := get("THREAD_FOLLOWUPS")) is not None:
        s["thread_followups"] = _bool("THREAD_FOLLOWUPS", v)
    if (v := get("WINDOW_START")) is not None:
        s["window_start"] = _int("WINDOW_START", v, 0, 23)
    if (v := get("WINDOW_END")) is not None:
        s["window_end"] = _int("WINDOW_END", v, 1, 24)
    if (v := get("RESERVATION_LEASE_SECONDS")) is not None:
        s["reservation_lease_seconds"] = _float("RESERVATION_LEASE_SECONDS", v)
    if (v := get("GMAIL_DRAFTS_PER_SECOND")) is not None:
        s["gmail_drafts_per_second"] = _float("GMAIL_DRAFTS_PER_SECOND", v)
    if (v := get("DRAFT_CONCURRENCY")) is not None:
        s["draft_concurrency"] = _int("DRAFT_CONCURRENCY", v, 1, 32)
    if (v := get("GMAIL_RETRY_SECONDS")) is not None:
        s["gmail_retry_seconds"] = _float("GMAIL_RETRY_SECONDS", v)
    if (v := get("MAX_REQUEST_BYTES")) is not None:
        s["max_request_bytes"] = _int("MAX_REQUEST_BYTES", v, 1024, 1 << 31)
    if (v := get("MAX_ROWS_PER_REQUEST")) is not None:
        s["max_rows_per_request"] = _int("MAX_ROWS_PER_REQUEST", v, 1, 10_000_000)
    if (v := get("PLAN_PROCESSES")) is not None:
        s["plan_processes"] = _int("PLAN_PROCESSES", v, 0, 256)
    if (v := get("PLAN_SHARE_MIN_ROWS")) is not None:
        s["plan_share_min_rows"] = _int("PLAN_SHARE_MIN_ROWS", v, 1, 10_000_000)
    if (v := get("RATE_LIMIT_PER_MINUTE")) is not None:
        s["rate_limit_per_minute"] = _int("RATE_LIMIT_PER_MINUTE", v, 0, 1_000_000)
    if (v := get("SLACK_MIN_AMOUNT")) is not None:
        try:
            s["slack_min_amount"] = Decimal(v)
        except InvalidOperation:
            raise ConfigError(f"SLACK_MIN_AMOUNT must be an amount, not {v!r}") from None

    settings = Settings(**s)
    if settings.window_start >= settings.window_end:
        raise ConfigError("WINDOW_START must be earlier than WINDOW_END")
    if settings.drafts_backend == "gmail" and not settings.gmail_sender:
        raise ConfigError("GMAIL_SENDER is required when DRAFTS_BACKEND=gmail")
    return settings


def load_settings(env: Mapping[str, str] | None = None, dotenv: Path | None = None) -> Settings:
    """Settings from ``env`` (default: the process environment, after loading `.env`)."""
    if env is None:
        from dotenv import dotenv_values

        path = dotenv or Path.cwd() / ".env"
        merged = {k: v for k, v in dotenv_values(path).items() if v is not None}
        merged.update(os.environ)  # the real environment wins over .env, as with docker/systemd
        env = merged
    return settings_from_env(env)
