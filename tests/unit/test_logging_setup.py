"""JSON logs on stdout, with tokens, keys and email bodies kept out of them."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from service.logging_setup import configure_logging

API_KEY = "k3y-0f-the-service-123456"


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines()]


def test_a_record_is_one_json_line_with_ts_level_logger_msg_and_extras(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO")
    logging.getLogger("service.run").info(
        "drafted %d of %d", 3, 4, extra={"invoice_id": "INV-1", "stage": 7}
    )
    [line] = _lines(capsys)
    assert line["level"] == "INFO"
    assert line["logger"] == "service.run"
    assert line["msg"] == "drafted 3 of 4"
    assert line["invoice_id"] == "INV-1"
    assert line["stage"] == 7
    assert isinstance(line["ts"], str)
    assert line["ts"].endswith("Z")


def test_records_below_the_level_are_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("warning")
    logging.getLogger("x").info("quiet")
    logging.getLogger("x").warning("loud")
    assert [line["msg"] for line in _lines(capsys)] == ["loud"]


def test_configuring_twice_does_not_double_every_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    configure_logging("INFO")
    logging.getLogger("x").info("once")
    assert len(_lines(capsys)) == 1


def test_an_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("chatty")


def test_bearer_tokens_google_tokens_and_configured_keys_never_reach_stdout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", secrets=[API_KEY, "short"])
    log = logging.getLogger("service.api")
    log.info("request headers %s", {"Authorization": f"Bearer {API_KEY}", "X-Trace": "t1"})
    log.info("Authorization: Basic dXNlcjpwYXNz was sent")
    log.info("gmail token ya29.a0AfH6SMBx-secret_Token.value expired")
    log.info("refresh with 1//0gLx7d9sT-secret-refresh-token")
    log.warning("stripe said no", extra={"detail": "key sk_live_51Habc123 rejected"})
    log.info(
        "echo", extra={"api_key": "anything at all", "headers": {"X-Google-Access-Token": "t"}}
    )
    log.info("key in the text: %s", API_KEY)
    log.info("the short secret stays: short")
    out = capsys.readouterr().out
    for secret in (API_KEY, "dXNlcjpwYXNz", "ya29.", "secret_Token", "secret-refresh", "sk_live_"):
        assert secret not in out
    assert "anything at all" not in out
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["msg"] == "request headers {'Authorization': '[REDACTED]', 'X-Trace': 't1'}"
    assert lines[1]["msg"] == "Authorization: [REDACTED] was sent"
    assert lines[6]["msg"] == "key in the text: [REDACTED]"
    assert lines[7]["msg"].endswith("short")  # too short to mask without mangling the logs


def test_a_slack_webhook_url_in_an_exception_is_redacted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO")
    try:
        raise ConnectionError("Max retries exceeded with url: /services/T000/B000/XXXXsecret")
    except ConnectionError:
        logging.getLogger("service.slack").exception("post failed")
    [line] = _lines(capsys)
    assert "XXXXsecret" not in json.dumps(line)
    assert "/services/[REDACTED]" in str(line["exc"])


def test_email_bodies_passed_as_extras_are_omitted(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    logging.getLogger("service.drafts").info(
        "rendered", extra={"invoice_id": "INV-1", "body": "Dear Acme, you owe $1,234.50"}
    )
    [line] = _lines(capsys)
    assert "Dear Acme" not in json.dumps(line)
    assert line["invoice_id"] == "INV-1"
