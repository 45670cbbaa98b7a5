"""Rate limits per API key or Google identity: 429 JSON with Retry-After."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from service.api import ratelimit
from service.api.app import create_app
from service.api.errors import ApiError
from service.api.ratelimit import RateLimiter
from service.bootstrap import build_services
from service.config import Settings
from tests.conftest import API_KEY, FIXED_NOW


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_up_to_the_limit_is_allowed_then_refused() -> None:
    limiter = RateLimiter(3, clock=Clock())
    assert [limiter.wait_seconds("key:a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.wait_seconds("key:a") == pytest.approx(20.0)  # one token per 20 s


def test_tokens_come_back_at_the_configured_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(60, clock=clock)
    for _ in range(60):
        limiter.check("key:a")
    with pytest.raises(ApiError):
        limiter.check("key:a")
    clock.now += 1.0
    limiter.check("key:a")  # a token a second
    with pytest.raises(ApiError):
        limiter.check("key:a")


def test_each_identity_has_its_own_bucket() -> None:
    limiter = RateLimiter(1, clock=Clock())
    limiter.check("key:a")
    limiter.check("google:ann@example.com")
    with pytest.raises(ApiError):
        limiter.check("key:a")


def test_refusal_is_a_429_with_whole_seconds_in_retry_after() -> None:
    limiter = RateLimiter(2, clock=Clock())
    limiter.check("key:a")
    limiter.check("key:a")
    with pytest.raises(ApiError) as refused:
        limiter.check("key:a")
    assert refused.value.status == 429
    assert refused.value.code == "rate_limited"
    assert refused.value.headers == {"Retry-After": "30"}
    assert refused.value.details == {"limit_per_minute": 2, "retry_after": 30}


def test_zero_turns_the_limit_off() -> None:
    limiter = RateLimiter(0, clock=Clock())
    assert all(limiter.wait_seconds("key:a") == 0 for _ in range(10_000))


def test_idle_buckets_are_forgotten_when_the_table_is_full(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ratelimit, "MAX_BUCKETS", 10)
    clock = Clock()
    limiter = RateLimiter(60, clock=clock)
    for i in range(10):
        limiter.check(f"key:{i}")
    clock.now += 61
    limiter.check("key:new")
    assert len(limiter._buckets) == 1


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
    assert response.headers["Retry-After"] == "30"
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
