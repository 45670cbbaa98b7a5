"""One Settings object built from the environment (and `.env`), validated once.

Nothing else reads the environment: entry points call `load_settings()` and pass the result
down. environs parses variable `X` into field `x`; names follow DESIGN §9 and `.env.example`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import holidays
from babel import Locale, UnknownLocaleError
from dotenv import dotenv_values
from environs import Env, ValidationError
from environs import validate as check
from environs.exceptions import EnvValidationError

from service.domain.calendar import BusinessCalendar, weekend_days
from service.domain.decide import DEFAULT_CLOSED_STATUSES, DEFAULT_STAGES, CatchUp, Policy
from service.domain.invoice import INPUT_FIELDS, OUTPUT_FIELDS, ParseOptions
from service.domain.money import is_known_currency

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def machine_timezone(tz: str = "") -> str:
    """This machine's IANA zone: ``tz`` (the TZ variable), else /etc/localtime's link, else UTC."""
    name = tz.strip().lstrip(":")
    if not name and Path("/etc/localtime").is_symlink():
        name = str(Path("/etc/localtime").resolve()).partition("/zoneinfo/")[2]
    try:
        ZoneInfo(name)
    except (ValueError, LookupError):
        return "UTC"
    return name


@dataclass(frozen=True)
class Settings:
    """Every knob of the service, typed."""

    api_keys: tuple[str, ...] = ()  # the keys alone, bound or not
    # API_KEYS entries `key:scope1|scope2` limit that key to those scopes; others use every one.
    api_key_scopes: Mapping[str, frozenset[str]] = field(
        default_factory=dict, metadata={"read_from": "API_KEYS"}
    )
    database_url: str = ""
    drafts_backend: str = "maildir"
    maildir_path: Path = PROJECT_ROOT / "var" / "Maildir"
    invoices_file: Path = PROJECT_ROOT / "examples" / "invoices.csv"
    templates_dir: Path = PROJECT_ROOT / "templates"
    # TIMEZONE, else this machine's zone: the day of a local file, a plan request, the CLI.
    timezone: str = field(default_factory=machine_timezone)
    # TIMEZONE as set: it then overrides a Google Sheet's own zone; unset (None), the sheet's.
    timezone_override: str | None = field(default=None, metadata={"read_from": "TIMEZONE"})
    locale: str = "en_US"
    default_currency: str = "USD"
    date_format: str | None = None
    column_map: Mapping[str, str] = field(default_factory=dict)
    stages: tuple[int, ...] = DEFAULT_STAGES
    closed_statuses: frozenset[str] = DEFAULT_CLOSED_STATUSES
    min_gap_days: int = 0
    promise_grace_days: int = 1
    catch_up: str = "latest"  # or "next": the stage after the last drafted, none skipped
    business_days: bool = True
    weekend: str = "sat,sun"
    holidays_country: str = ""  # e.g. US, GB, DE: public holidays are not business days
    holidays_subdivision: str = ""  # e.g. CA for California
    group_by_client: bool = False
    unsent_policy: str = "wait"  # or "continue": draft the next stage on top of an unsent one
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
    gmail_drafts_per_second: float = 24.0  # under Gmail's 25/s: 15,000 units a minute, 10 a create
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
    # SLACK_MIN_AMOUNT: `1000` (DEFAULT_CURRENCY) or `1000 USD, 900 EUR`; a currency not
    # named never alerts. Empty: every currency, any amount.
    slack_min_amount: Mapping[str, Decimal] = field(
        default_factory=dict, metadata={"read_from": "SLACK_MIN_AMOUNT"}
    )
    sheets_log_tab: str = ""  # a tab that gets one line per draft, one values.append per run
    run_lease_seconds: float = 300.0  # a /v1/runs run silent this long lost its worker
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
    allowed_google_identities: tuple[str, ...] = ()  # addresses and @domains, bound or not
    # Entries written `ana@client.example:scope1|scope2` (or `@domain:…`), as for API_KEYS.
    google_identity_scopes: Mapping[str, frozenset[str]] = field(
        default_factory=dict, metadata={"read_from": "ALLOWED_GOOGLE_IDENTITIES"}
    )
    # Where Google publishes the keys that sign ID tokens (x509 PEM by key id); tests override.
    google_certs_url: str = "https://www.googleapis.com/oauth2/v1/certs"

    @cached_property
    def policy(self) -> Policy:
        """The decision settings."""
        calendar = None
        if self.business_days:
            country, subdiv = self.holidays_country, self.holidays_subdivision or None
            days_off = holidays.country_holidays(country, subdiv=subdiv) if country else frozenset()
            calendar = BusinessCalendar(weekend_days(self.weekend), days_off)
        return Policy(
            self.stages,
            self.closed_statuses,
            self.min_gap_days,
            self.promise_grace_days,
            CatchUp(self.catch_up),
            calendar,
        )

    @property
    def parse_options(self) -> ParseOptions:
        """How rows are read."""
        return ParseOptions(self.default_currency, self.date_format, self.column_map)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every configured secret, to be masked should one reach a log line."""
        values = (self.stripe_api_key, self.slack_webhook_url)
        return tuple(v for v in (*values, self.qbo_client_secret, self.qbo_refresh_token) if v)

    @property
    def effective_database_url(self) -> str:
        """DATABASE_URL, or a SQLite file beside the Maildir (the embedded default)."""
        return self.database_url or f"sqlite:///{PROJECT_ROOT / 'var' / 'ledger.db'}"


def _thresholds(text: str, default_currency: str) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    entries = [part.strip() for part in text.split(",") if part.strip()]
    for entry in entries:
        amount, _, currency = entry.partition(" ")
        try:
            value = Decimal(amount)
        except ArithmeticError:
            value = Decimal("NaN")
        # A bare amount stands alone: in a list, `1,000 USD` would read as 1 and 000 USD.
        bare = not currency.strip() and len(entries) > 1
        currency = currency.strip().upper() or default_currency
        if bare or not value.is_finite() or value < 0 or not is_known_currency(currency):
            raise ConfigError(
                "SLACK_MIN_AMOUNT: expected a number like 1000, or amounts by currency like "
                f"`1000 USD, 900 EUR` without thousands separators (got {entry!r})"
            )
        out[currency] = value
    return out


# Inclusive limits of the integer settings; every float setting must be above zero.
_BOUNDED = {
    "MIN_GAP_DAYS": (0, 365), "WINDOW_START": (0, 23), "WINDOW_END": (1, 24),
    "DRAFT_CONCURRENCY": (1, 32), "MAX_REQUEST_BYTES": (1024, 1 << 31),
    "MAX_ROWS_PER_REQUEST": (1, 10_000_000), "RATE_LIMIT_PER_MINUTE": (0, 1_000_000),
    "AUTH_FAILURES_PER_MINUTE": (1, 1_000_000), "PROXY_HOPS": (0, 10),
    "PROMISE_GRACE_DAYS": (0, 60),
}  # fmt: skip
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
        except (ValueError, LookupError, UnknownLocaleError, NotImplementedError):
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


def _bindings(
    name: str, entries: tuple[str, ...], *, who_is: str
) -> tuple[tuple[str, ...], dict[str, frozenset[str]]]:
    """Every who of ``who`` / ``who:scope1|scope2`` entries, and the scopes of those bound.
    Only the first ``:`` separates, so a scope may hold one (``file:invoices.csv``)."""
    seen: dict[str, frozenset[str] | None] = {}
    for number, entry in enumerate(entries, 1):
        who, sep, listed = (part.strip() for part in entry.partition(":"))
        scopes = frozenset(scope.strip() for scope in listed.split("|")) if sep else None
        # A key's entry is never quoted back: the message may reach a terminal or a log.
        shown = f"entry {number}" if who_is == "key" else f"entry {number} ({entry!r})"
        if not who or (scopes is not None and "" in scopes):
            raise ConfigError(
                f"{name}: {shown} is malformed; write {who_is} alone (every scope) or "
                f"{who_is}:scope1|scope2, with no empty part"
            )
        if who in seen and seen[who] != scopes:
            raise ConfigError(f"{name}: {shown} repeats an earlier {who_is} with other scopes")
        seen[who] = scopes
    if who_is == "address" and (bad := [who for who in seen if "@" not in who]):
        raise ConfigError(f"{name}: {bad[0]!r} is neither an address nor an @domain")
    bound = {who: scopes for who, scopes in seen.items() if scopes is not None}
    return tuple(seen), bound


def settings_from_env(env: Mapping[str, str]) -> Settings:
    """Build and validate Settings from ``env`` alone (os.environ is not read)."""
    read, default, s = _MappingEnv(env), Settings(), dict[str, Any]()
    # Each field is read by its type, as annotated (a string, under `from __future__`).
    readers: dict[str, tuple[Callable[..., Any], ...]] = {
        "str": (read.str,), "Path": (read.path,), "bool": (read.bool,), "int": (read.int,),
        "float": (read.float,), "tuple[int, ...]": (read.list, int),
        "tuple[str, ...]": (read.list, str.strip), "frozenset[str]": (read.list, str.strip),
        "Mapping[str, str]": (read.list, _column_pair),
    }  # fmt: skip
    currency = _must(lambda code: is_known_currency(code.upper()), "an ISO 4217 code like EUR")
    checks = {
        "DRAFTS_BACKEND": check.OneOf(("gmail", "maildir")),
        "TIMEZONE": _must(ZoneInfo, "an IANA zone like Europe/Paris"),
        "LOCALE": _must(Locale.parse, "a locale such as en_US or de_DE"),
        "DEFAULT_CURRENCY": currency,
        "STAGES": _must(
            lambda days: days and 0 not in days, "day counts like -3,7,14,21 (never 0)"
        ),
        "CATCH_UP": check.OneOf(("latest", "next")),
        "UNSENT_POLICY": check.OneOf(("wait", "continue")),
        "WEEKEND": _must(lambda names: weekend_days(names) is not None, "days like sat,sun"),
        "HOLIDAYS_COUNTRY": _must(
            lambda code: holidays.country_holidays(code) is not None, "a country code like US or DE"
        ),
        **{name: check.Range(lo, hi) for name, (lo, hi) in _BOUNDED.items()},
    }
    for f in fields(Settings):
        if "read_from" in f.metadata:  # filled below from the variable it names
            continue
        name, (parse, *subcast) = f.name.upper(), readers[str(f.type).removesuffix(" | None")]
        positive = check.Range(0, min_inclusive=False) if f.type == "float" else None
        try:
            value = parse(
                name, getattr(default, f.name), *subcast, validate=checks.get(name, positive)
            )
        except EnvValidationError as error:
            reasons = error.error_messages  # a list, or lists by list index
            if isinstance(reasons, Mapping):
                reasons = [reason for by_index in reasons.values() for reason in by_index]
            why = " ".join(dict.fromkeys(map(str, reasons)))
            raise ConfigError(f"{name}: {why} (got {env.get(name, '').strip()!r})") from None
        if isinstance(value, list):  # "a, ,b" lists no blank entry
            value = tuple(item for item in value if item != "")
        s[f.name] = value.expanduser() if isinstance(value, Path) else value

    s["api_keys"], s["api_key_scopes"] = _bindings("API_KEYS", s["api_keys"], who_is="key")
    identities = tuple(
        who.lower() + sep + scopes
        for who, sep, scopes in (entry.partition(":") for entry in s["allowed_google_identities"])
    )  # addresses are matched in lower case; spreadsheet ids are case-sensitive
    s["allowed_google_identities"], s["google_identity_scopes"] = _bindings(
        "ALLOWED_GOOGLE_IDENTITIES", identities, who_is="address"
    )
    s["default_currency"] = s["default_currency"].upper()
    s["timezone_override"] = (env.get("TIMEZONE") or "").strip() or None  # checked above
    if s["timezone_override"] is None:
        s["timezone"] = machine_timezone(env.get("TZ") or "")
    s["slack_min_amount"] = _thresholds(env.get("SLACK_MIN_AMOUNT") or "", s["default_currency"])
    s["column_map"] = dict(s["column_map"])
    if str(s["sends_log"]).lower() in {"off", "none"}:
        s["sends_log"] = None
    # The domain's own rules sort the stages and normalise statuses (Written-Off = written off).
    policy = Policy(tuple(s["stages"]), frozenset(s["closed_statuses"]), s["min_gap_days"])
    s.update(stages=policy.stages, closed_statuses=policy.closed_statuses)

    if s["window_start"] >= s["window_end"]:
        raise ConfigError("WINDOW_START must be earlier than WINDOW_END")
    if s["holidays_subdivision"]:
        try:
            holidays.country_holidays(s["holidays_country"], subdiv=s["holidays_subdivision"])
        except (NotImplementedError, KeyError):
            raise ConfigError(
                f"HOLIDAYS_SUBDIVISION: {s['holidays_subdivision']!r} is not a subdivision "
                f"of {s['holidays_country'] or 'HOLIDAYS_COUNTRY (unset)'}"
            ) from None
    return Settings(**s)


def load_settings(env: Mapping[str, str] | None = None, dotenv: Path | None = None) -> Settings:
    """Settings from ``env`` (default: the process environment, after loading `.env`)."""
    if env is None:
        # The real environment wins over .env, as with docker and systemd.
        values = dotenv_values(dotenv or Path.cwd() / ".env")
        env = {**{key: value or "" for key, value in values.items()}, **os.environ}
    return settings_from_env(env)
