"""Rate limits (Flask-Limiter): per API key or Google identity, and failed authentication per
client address, each refused with a JSON 429 and Retry-After."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from service.api.app import create_app
from service.bootstrap import build_services
from service.config import Settings
from tests.conftest import API_KEY, FIXED_NOW


@pytest.fixture
def limited_client(make_settings: Callable[..., Settings]) -> FlaskClient:
    settings = make_settings(API_KEYS=f"{API_KEY},second-key-0123456789", RATE_LIMIT_PER_MINUTE="2")
    return create_app(services=build_services(settings, clock=lambda: FIXED_NOW)).test_client()


def test_api_answers_429_json_with_retry_after_once_a_key_is_over_its_limit(
    limited_client: FlaskClient, auth: dict[str, str]
) -> None:
    assert limited_client.get("/v1/templates", headers=auth).status_code == 200
    assert limited_client.get("/v1/templates", headers=auth).status_code == 200
    response = limited_client.get("/v1/templates", headers=auth)
    assert response.status_code == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert response.get_json()["error"]["code"] == "rate_limited"
    other = {"Authorization": "Bearer second-key-0123456789"}
    assert limited_client.get("/v1/templates", headers=other).status_code == 200


def test_unauthenticated_requests_do_not_use_up_a_keys_allowance(
    limited_client: FlaskClient, auth: dict[str, str]
) -> None:
    for _ in range(5):
        assert limited_client.get("/v1/templates").status_code == 401
    assert limited_client.get("/v1/templates", headers=auth).status_code == 200


def test_health_check_is_never_limited(limited_client: FlaskClient) -> None:
    assert all(limited_client.get("/healthz").status_code == 200 for _ in range(5))


def test_guessing_keys_from_one_address_ends_in_429(
    make_settings: Callable[..., Settings], auth: dict[str, str]
) -> None:
    settings = make_settings(AUTH_FAILURES_PER_MINUTE="5")
    client = create_app(services=build_services(settings, clock=lambda: FIXED_NOW)).test_client()
    wrong = [{"Authorization": f"Bearer guess-{i}"} for i in range(8)]
    statuses = [client.get("/v1/templates", headers=h).status_code for h in wrong]
    assert statuses == [401] * 5 + [429] * 3
    refused = client.get("/v1/templates", headers=wrong[0])
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    # Another address is not affected, nor are this address's good requests counted as failures.
    other = {"REMOTE_ADDR": "192.0.2.7"}
    assert client.get("/v1/templates", headers=auth, environ_base=other).status_code == 200


def test_successful_requests_do_not_count_as_failures(
    make_settings: Callable[..., Settings], auth: dict[str, str]
) -> None:
    settings = make_settings(AUTH_FAILURES_PER_MINUTE="2")
    client = create_app(services=build_services(settings, clock=lambda: FIXED_NOW)).test_client()
    assert all(client.get("/v1/templates", headers=auth).status_code == 200 for _ in range(6))
