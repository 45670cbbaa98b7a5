"""Configuration: one Settings object read from a mapping by environs, validated once."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from service.config import PROJECT_ROOT, ConfigError, Settings, load_settings, settings_from_env
from service.domain.decide import DEFAULT_CLOSED_STATUSES, DEFAULT_STAGES, Action, Reason, decide
from service.domain.invoice import Invoice, parse_row


class RecordingEnv(dict[str, str]):
    """A mapping that remembers every variable asked of it."""

    def __init__(self, *args: object, **kwargs: str) -> None:
        super().__init__(*args, **kwargs)
        self.asked: set[str] = set()

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)


def test_an_empty_environment_gives_the_documented_defaults() -> None:
    settings = settings_from_env({})
    assert settings == Settings()
    assert settings.drafts_backend == "maildir"
    assert settings.dry_run is True
    assert (settings.window_start, settings.window_end) == (0, 24)
    assert settings.stages == DEFAULT_STAGES
    assert settings.closed_statuses == DEFAULT_CLOSED_STATUSES
    assert settings.sends_log == PROJECT_ROOT / "logs" / "sends.csv"
    assert settings.effective_database_url.startswith("sqlite:///")


def test_every_setting_is_read_from_its_upper_case_variable() -> None:
    env = RecordingEnv()
    settings_from_env(env)
    assert {
        f.metadata.get("read_from", f.name.upper()) for f in dataclasses.fields(Settings)
    } <= env.asked


def test_empty_or_blank_values_count_as_unset() -> None:
    assert settings_from_env({"WINDOW_START": "", "STAGES": "  ", "DRY_RUN": ""}) == Settings()


def test_values_are_parsed_to_their_types() -> None:
    settings = settings_from_env(
        {
            "API_KEYS": " key-one , ,key-two",
            "ALLOWED_GOOGLE_IDENTITIES": "Boss@Owner.example, @accounts.example.com",
            "STAGES": "14, 7,7",
            "DRY_RUN": "false",
            "WINDOW_START": "8",
            "WINDOW_END": "18",
            "DEFAULT_CURRENCY": "eur",
            "COLUMN_MAP": "invoice_id = Invoice Number,due_date=Due",
            "SLACK_MIN_AMOUNT": "1000.50",
            "MAILDIR_PATH": "~/Maildir",
            "SENDS_LOG": "off",
            "GMAIL_RETRY_SECONDS": "12.5",
        }
    )
    assert settings.api_keys == ("key-one", "key-two")
    assert settings.allowed_google_identities == ("boss@owner.example", "@accounts.example.com")
    assert settings.stages == (7, 14)
    assert settings.dry_run is False
    assert (settings.window_start, settings.window_end) == (8, 18)
    assert settings.default_currency == "EUR"
    assert settings.column_map == {"invoice_id": "Invoice Number", "due_date": "Due"}
    assert settings.slack_min_amount == {"EUR": Decimal("1000.50")}  # DEFAULT_CURRENCY
    assert settings.maildir_path == Path("~/Maildir").expanduser()
    assert settings.sends_log is None
    assert settings.gmail_retry_seconds == 12.5


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("WINDOW_START", "eight", "integer"),
        ("WINDOW_END", "25", "less than or equal to 24"),
        ("MIN_GAP_DAYS", "-1", "greater than or equal to 0"),
        ("RATE_LIMIT_PER_MINUTE", "1.5", "integer"),
        ("RESERVATION_LEASE_SECONDS", "0", "greater than 0"),
        ("GMAIL_DRAFTS_PER_SECOND", "fast", "number"),
        ("DRY_RUN", "maybe", "boolean"),
        ("THREAD_FOLLOWUPS", "2", "boolean"),
        ("DRAFTS_BACKEND", "smtp", "gmail, maildir"),
        ("LOCALE", "xx_QQ", "locale"),
        ("DEFAULT_CURRENCY", "DOLLARS", "ISO 4217"),
        ("TIMEZONE", "Mars/Olympus", "IANA"),
        ("STAGES", "7,x", "integer"),
        ("STAGES", "0,7", "never 0"),
        ("COLUMN_MAP", "invoice_id=Invoice,nonsense", "invoice_id=Invoice Number"),
        ("COLUMN_MAP", "colour=Color", "invoice_id=Invoice Number"),
        ("SLACK_MIN_AMOUNT", "a lot", "number"),
        ("SLACK_MIN_AMOUNT", "NaN", "a number like 1000"),
    ],
)
def test_a_bad_value_is_a_config_error_naming_the_variable_and_what_was_expected(
    name: str, value: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_env({name: value})
    message = str(caught.value)
    assert message.startswith(f"{name}: ")
    assert expected in message
    assert repr(value) in message


def test_the_window_must_open_before_it_closes() -> None:
    with pytest.raises(ConfigError, match="WINDOW_START must be earlier than WINDOW_END"):
        settings_from_env({"WINDOW_START": "18", "WINDOW_END": "8"})


def test_the_mapping_given_is_read_and_os_environ_is_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WINDOW_START", "not a number")
    monkeypatch.setenv("DRAFTS_BACKEND", "gmail")
    monkeypatch.setenv("SENDER_NAME", "From os.environ")
    settings = settings_from_env({"SENDER_NAME": "From the mapping"})
    assert settings.sender_name == "From the mapping"
    assert settings.drafts_backend == "maildir"
    assert settings.window_start == 0


def test_dotenv_is_read_and_the_real_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("SENDER_NAME=Dotenv Team\nLOCALE=de_DE\nMIN_GAP_DAYS=3\n")
    monkeypatch.setenv("SENDER_NAME", "Environment Team")
    monkeypatch.delenv("LOCALE", raising=False)
    monkeypatch.delenv("MIN_GAP_DAYS", raising=False)
    settings = load_settings(dotenv=dotenv)
    assert settings.sender_name == "Environment Team"
    assert (settings.locale, settings.min_gap_days) == ("de_DE", 3)


def invoice(status: str) -> Invoice:
    row = {
        "invoice_id": "INV-7",
        "client_name": "Ann",
        "client_email": "ann@client.example.com",
        "amount": "100.00",
        "currency": "USD",
        "due_date": "2025-01-01",
        "status": status,
    }
    parsed = parse_row(row, settings_from_env({}).parse_options)
    assert isinstance(parsed, Invoice)
    return parsed


@pytest.mark.parametrize("status", ["written off", "On Hold", "PAID", "paid"])
def test_closed_statuses_are_normalised_like_the_rows_status(status: str) -> None:
    settings = settings_from_env({"CLOSED_STATUSES": "Written-Off,On_Hold, PAID "})
    assert settings.closed_statuses == {"written off", "on hold", "paid"}
    decision = decide(invoice(status), dt.date(2025, 1, 22), settings.policy)
    assert (decision.action, decision.reason) == (Action.SKIP, Reason.CLOSED_STATUS)


def test_a_status_not_in_closed_statuses_is_drafted() -> None:
    settings = settings_from_env({"CLOSED_STATUSES": "Written-Off"})
    decision = decide(invoice("paid"), dt.date(2025, 1, 22), settings.policy)
    assert (decision.action, decision.stage) == (Action.DRAFT, 21)


def test_gmail_drafts_need_no_gmail_sender() -> None:
    settings = settings_from_env({"DRAFTS_BACKEND": "gmail"})
    assert (settings.drafts_backend, settings.gmail_sender) == ("gmail", "")


def test_plan_processes_is_no_longer_a_setting_and_is_ignored() -> None:
    settings = settings_from_env(
        {"PLAN_PROCESSES": "not even a number", "PLAN_SHARE_MIN_ROWS": "x"}
    )
    assert settings == Settings()
    assert not hasattr(settings, "plan_processes")
    assert not hasattr(settings, "plan_sharing")
