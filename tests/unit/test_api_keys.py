"""API keys at the door of every /v1 route: exactly a configured key passes, nothing near it.

Keys are compared whole, in constant time, case-sensitively; a wrong key is a 401 in the one
JSON error shape, and a client address that keeps guessing is slowed down with 429.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from service.api.app import create_app
from service.bootstrap import build_services
from service.config import Settings
from tests.conftest import FIXED_NOW, invoice_row

KEYS = ("alpha-key-123", "beta-key-456")
PLAN = {"today": "2025-01-22", "invoices": [invoice_row()]}


@pytest.fixture
def keyed_client(make_settings: Callable[..., Settings]) -> FlaskClient:
    settings = make_settings(API_KEYS=",".join(KEYS))
    return create_app(services=build_services(settings, clock=lambda: FIXED_NOW)).test_client()


def _plan(
    client: FlaskClient, authorization: str | None, address: str = "192.0.2.10"
) -> TestResponse:
    headers = {} if authorization is None else {"Authorization": authorization}
    return client.post(
        "/v1/plan", json=PLAN, headers=headers, environ_base={"REMOTE_ADDR": address}
    )


def _assert_error_shape(response: TestResponse, status: int, code: str) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]


@pytest.mark.parametrize("key", KEYS)
def test_each_configured_key_is_accepted(keyed_client: FlaskClient, key: str) -> None:
    response = _plan(keyed_client, f"Bearer {key}")

    assert response.status_code == 200, response.get_data(as_text=True)
    assert [row["invoice_id"] for row in response.get_json()["rows"]] == ["INV-1"]


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("Bearer alpha-key-1234", id="key-plus-one-character"),
        pytest.param("Bearer alpha-key-12", id="key-minus-its-last-character"),
        pytest.param("Bearer ALPHA-KEY-123", id="key-in-upper-case"),
        pytest.param("Bearer Beta-Key-456", id="key-in-mixed-case"),
        pytest.param("Bearer alpha-key-123beta-key-456", id="two-keys-run-together"),
        pytest.param("Bearer alpha-key-123,beta-key-456", id="the-whole-setting"),
        pytest.param("Bearer ", id="empty-bearer"),
        pytest.param("Bearer", id="bearer-without-a-token"),
        pytest.param("Basic alpha-key-123", id="basic-scheme"),
        pytest.param("Token alpha-key-123", id="token-scheme"),
        pytest.param("alpha-key-123", id="no-scheme"),
        pytest.param("", id="empty-header"),
        pytest.param(None, id="no-header"),
    ],
)
def test_anything_but_an_exact_configured_key_is_refused(
    keyed_client: FlaskClient, authorization: str | None
) -> None:
    response = _plan(keyed_client, authorization)

    _assert_error_shape(response, 401, "unauthorized")
    assert "rows" not in response.get_json()
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(" alpha-key-123", id="leading-space"),
        pytest.param("alpha-key-123 ", id="trailing-space"),
        pytest.param("alpha-key-123\t", id="trailing-tab"),
    ],
)
def test_a_key_with_surrounding_whitespace_is_the_same_key(
    keyed_client: FlaskClient, token: str
) -> None:
    # RFC 6750 allows several spaces after "Bearer", and HTTP servers strip a header value's
    # trailing white space (gunicorn does): the token itself never contains either.
    assert _plan(keyed_client, f"Bearer {token}").status_code == 200


def test_forty_wrong_keys_from_one_address_are_rate_limited(
    keyed_client: FlaskClient,
) -> None:
    guesser = "203.0.113.7"

    statuses = [
        _plan(keyed_client, f"Bearer guess-{n:04d}", guesser).status_code for n in range(40)
    ]
    limited = _plan(keyed_client, "Bearer guess-final", guesser)

    assert statuses[0] == 401  # a few honest typos are answered as what they are
    assert 429 in statuses, statuses
    first = statuses.index(429)
    assert set(statuses[first:]) == {429}, statuses  # once limited, it stays limited
    _assert_error_shape(limited, 429, "rate_limited")
    assert int(limited.headers["Retry-After"]) >= 1
    assert "rows" not in limited.get_json()
    # The limit is per client address: another one is still answered, and served with a key.
    assert _plan(keyed_client, "Bearer typo", "198.51.100.20").status_code == 401
    assert _plan(keyed_client, f"Bearer {KEYS[0]}", "198.51.100.20").status_code == 200


def test_wrong_keys_spread_over_the_v1_routes_share_one_limit_per_address(
    keyed_client: FlaskClient,
) -> None:
    guesser = {"REMOTE_ADDR": "203.0.113.8"}
    routes = [("POST", "/v1/plan"), ("GET", "/v1/templates"), ("POST", "/v1/drafts")]
    routes += [("POST", "/v1/runs")]

    statuses = [
        keyed_client.open(
            path,
            method=method,
            json={"invoices": []},
            headers={"Authorization": f"Bearer guess-{n:02d}"},
            environ_base=guesser,
        ).status_code
        for n in range(40)
        for method, path in [routes[n % len(routes)]]
    ]

    assert statuses[0] == 401
    assert statuses[-1] == 429, statuses  # guessing on four doors is still one guesser
