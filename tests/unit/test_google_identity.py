"""Google ID tokens as a second way in: verified offline against certs served on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from flask.testing import FlaskClient
from google.auth import crypt, jwt

from service.api.app import create_app
from service.api.auth import GoogleIdentity
from service.api.errors import ApiError
from service.bootstrap import build_services
from service.config import Settings
from tests.conftest import API_KEY, FIXED_NOW
from tests.emulators.server import serve_wsgi

pytestmark = pytest.mark.timeout(60)

CLIENT_ID = "1234567890-addon.apps.googleusercontent.com"
USER = "ann@accounts.example.com"


@dataclass
class SigningKey:
    """An RSA key, its self-signed certificate and the key id Google would give it."""

    kid: str
    private_pem: bytes
    cert_pem: str

    def sign(self, claims: dict[str, Any]) -> str:
        """A JWT signed with this key, ``kid`` in its header."""
        signer = crypt.RSASigner.from_string(self.private_pem, key_id=self.kid)  # type: ignore[no-untyped-call]
        token: bytes = jwt.encode(signer, claims)  # type: ignore[no-untyped-call]
        return token.decode()


def make_key(kid: str) -> SigningKey:
    """A fresh 2048-bit key and a one-day self-signed certificate (Google's cert format)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "securetoken.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return SigningKey(kid, private_pem, cert.public_bytes(serialization.Encoding.PEM).decode())


@dataclass
class CertsServer:
    """Google's certs endpoint on loopback: ``{kid: PEM certificate}``, counting fetches."""

    keys: list[SigningKey]
    url: str = ""
    fetches: int = 0
    available: bool = True
    published: list[SigningKey] = field(default_factory=list)

    def app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The WSGI endpoint."""
        self.fetches += 1
        if not self.available:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"down"]
        body = json.dumps({k.kid: k.cert_pem for k in self.published}).encode()
        start_response(
            "200 OK",
            [("Content-Type", "application/json"), ("Cache-Control", "public, max-age=21600")],
        )
        return [body]


@pytest.fixture(scope="module")
def google_key() -> SigningKey:
    return make_key("kid-current")


@pytest.fixture(scope="module")
def other_key() -> SigningKey:
    return make_key("kid-next")


@pytest.fixture
def certs(google_key: SigningKey) -> Iterator[CertsServer]:
    server = CertsServer(keys=[google_key], published=[google_key])
    with serve_wsgi(server.app) as base_url:
        server.url = base_url + "oauth2/v1/certs"
        yield server


@pytest.fixture
def google_client(make_settings: Callable[..., Settings], certs: CertsServer) -> FlaskClient:
    settings = make_settings(
        GOOGLE_CLIENT_ID=CLIENT_ID,
        ALLOWED_GOOGLE_IDENTITIES="boss@owner.example, @accounts.example.com",
        GOOGLE_CERTS_URL=certs.url,
    )
    app = create_app(services=build_services(settings, clock=lambda: FIXED_NOW))
    return app.test_client()


def claims(**overrides: Any) -> dict[str, Any]:
    """What ScriptApp.getIdentityToken() carries, valid for the next hour."""
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": "https://accounts.google.com",
        "aud": CLIENT_ID,
        "sub": "1098765432101234567890",
        "email": USER,
        "email_verified": True,
        "iat": now,
        "exp": now + 3600,
    }
    body.update(overrides)
    return body


def get_templates(client: FlaskClient, token: str) -> Any:
    return client.get("/v1/templates", headers={"Authorization": f"Bearer {token}"})


def test_valid_google_id_token_from_an_allowed_domain_is_accepted(
    google_client: FlaskClient, google_key: SigningKey
) -> None:
    response = get_templates(google_client, google_key.sign(claims()))
    assert response.status_code == 200, response.json


@pytest.mark.parametrize("issuer", ["accounts.google.com", "https://accounts.google.com"])
def test_both_google_issuer_spellings_are_accepted(
    google_client: FlaskClient, google_key: SigningKey, issuer: str
) -> None:
    assert get_templates(google_client, google_key.sign(claims(iss=issuer))).status_code == 200


def test_listed_email_outside_the_listed_domains_is_accepted(
    google_client: FlaskClient, google_key: SigningKey
) -> None:
    token = google_key.sign(claims(email="Boss@Owner.example"))
    assert get_templates(google_client, token).status_code == 200


def test_token_for_another_audience_is_refused(
    google_client: FlaskClient, google_key: SigningKey
) -> None:
    token = google_key.sign(claims(aud="someone-else.apps.googleusercontent.com"))
    response = get_templates(google_client, token)
    assert response.status_code == 401
    assert response.json["error"] == {
        "code": "unauthorized",
        "message": "The Google ID token is not valid.",
    }
    assert "invalid_token" in response.headers["WWW-Authenticate"]


def test_expired_token_is_refused(google_client: FlaskClient, google_key: SigningKey) -> None:
    now = int(time.time())
    token = google_key.sign(claims(iat=now - 7200, exp=now - 3600))
    assert get_templates(google_client, token).status_code == 401


def test_token_from_another_issuer_is_refused(
    google_client: FlaskClient, google_key: SigningKey
) -> None:
    token = google_key.sign(claims(iss="https://securetoken.google.com/some-project"))
    response = get_templates(google_client, token)
    assert response.status_code == 401
    assert "not issued by Google" in response.json["error"]["message"]


def test_identity_not_on_the_allow_list_is_forbidden(
    google_client: FlaskClient, google_key: SigningKey
) -> None:
    token = google_key.sign(claims(email="mallory@elsewhere.example"))
    response = get_templates(google_client, token)
    assert response.status_code == 403
    assert response.json["error"]["code"] == "forbidden"


def test_lookalike_domain_is_not_on_the_allow_list(
    google_client: FlaskClient, google_key: SigningKey
) -> None:
    token = google_key.sign(claims(email="eve@evilaccounts.example.com"))
    assert get_templates(google_client, token).status_code == 403


def test_unverified_email_is_refused(google_client: FlaskClient, google_key: SigningKey) -> None:
    token = google_key.sign(claims(email_verified=False))
    assert get_templates(google_client, token).status_code == 401


def test_token_signed_by_a_key_google_did_not_publish_is_refused(
    google_client: FlaskClient, google_key: SigningKey, other_key: SigningKey
) -> None:
    forged = SigningKey(google_key.kid, other_key.private_pem, other_key.cert_pem)
    assert get_templates(google_client, forged.sign(claims())).status_code == 401


def test_garbage_bearer_token_is_refused_without_echoing_it(google_client: FlaskClient) -> None:
    response = get_templates(google_client, "not.a.jwt-SECRET")
    assert response.status_code == 401
    assert "SECRET" not in response.get_data(as_text=True)


def test_api_key_still_works_beside_google_identity(google_client: FlaskClient) -> None:
    assert get_templates(google_client, API_KEY).status_code == 200


def test_certs_are_fetched_once_and_reused(
    google_client: FlaskClient, google_key: SigningKey, certs: CertsServer
) -> None:
    for _ in range(5):
        assert get_templates(google_client, google_key.sign(claims())).status_code == 200
    assert certs.fetches == 1


def test_cached_certs_expire_after_their_max_age(
    certs: CertsServer, google_key: SigningKey
) -> None:
    now = [1000.0]
    identity = GoogleIdentity(CLIENT_ID, ["@accounts.example.com"], certs.url, lambda: now[0])
    identity.verify(google_key.sign(claims()))
    now[0] += 21599
    identity.verify(google_key.sign(claims()))
    assert certs.fetches == 1
    now[0] += 2
    identity.verify(google_key.sign(claims()))
    assert certs.fetches == 2


def test_rotated_key_is_picked_up_by_refetching_once(
    certs: CertsServer, google_key: SigningKey, other_key: SigningKey
) -> None:
    now = [1000.0]
    identity = GoogleIdentity(CLIENT_ID, ["@accounts.example.com"], certs.url, lambda: now[0])
    identity.verify(google_key.sign(claims()))
    certs.published = [google_key, other_key]  # Google publishes the next key
    now[0] += 120
    assert identity.verify(other_key.sign(claims())).identity == "google:" + USER
    assert certs.fetches == 2


def test_unknown_key_ids_do_not_refetch_on_every_request(
    certs: CertsServer, google_key: SigningKey, other_key: SigningKey
) -> None:
    identity = GoogleIdentity(CLIENT_ID, ["@accounts.example.com"], certs.url)
    identity.verify(google_key.sign(claims()))
    for _ in range(3):
        with pytest.raises(ApiError) as refused:
            identity.verify(other_key.sign(claims()))
        assert refused.value.code == 401
    assert certs.fetches == 1


def test_unreachable_certs_endpoint_is_a_503_not_a_crash(
    google_client: FlaskClient, google_key: SigningKey, certs: CertsServer
) -> None:
    certs.available = False
    response = get_templates(google_client, google_key.sign(claims()))
    assert response.status_code == 503
    assert response.json["error"]["code"] == "unavailable"


def test_google_tokens_are_refused_when_no_client_id_is_configured(
    client: FlaskClient, google_key: SigningKey
) -> None:
    assert get_templates(client, google_key.sign(claims())).status_code == 401
