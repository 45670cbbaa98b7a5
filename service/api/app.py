"""The Flask application factory. Gunicorn runs ``service.api.app:create_app()``."""

from __future__ import annotations

import logging

from flask import Flask, g, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from werkzeug.middleware.proxy_fix import ProxyFix

from service.api import routes_drafts, routes_health, routes_plan, routes_runs, routes_templates
from service.api.auth import Authenticator
from service.api.errors import Api, ApiError
from service.bootstrap import Services, build_services
from service.config import Settings, load_settings
from service.logging_setup import configure_logging

log = logging.getLogger(__name__)

_BLUEPRINTS = (routes_plan, routes_drafts, routes_runs, routes_templates)


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    """Build the app from ``settings`` (default: the environment and `.env`)."""
    if services is None:
        services = build_services(settings or load_settings())
    settings = services.settings
    # JSON lines for gunicorn too, with every configured secret masked should one be logged.
    configure_logging(settings.log_level, secrets=[*settings.api_keys, *settings.secrets])

    app = Flask(__name__)
    if settings.proxy_hops:
        # Behind N proxies the client's address is in X-Forwarded-For: rate limits must key
        # on it, or one bad caller would lock out everyone behind the proxy.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.proxy_hops, x_proto=settings.proxy_hops
        )
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        API_TITLE="invoice-collector",
        API_VERSION="1.0.0",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={
            "info": {
                "description": "Decides which overdue invoices need a reminder and drafts it "
                "(Gmail or a Maildir). Never sends.",
            },
            "security": [{"bearerAuth": []}],
        },
    )
    app.extensions["invoice_collector"] = services

    api = Api(app)
    api.spec.components.security_scheme(
        "bearerAuth",
        {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key, or a Google ID token when GOOGLE_CLIENT_ID is set",
        },
    )
    api.spec.components.security_scheme(
        "googleAccessToken", {"type": "apiKey", "in": "header", "name": "X-Google-Access-Token"}
    )
    _authenticate_v1(app, settings)
    api.register_blueprint(routes_health.blp)
    for module in _BLUEPRINTS:
        api.register_blueprint(module.blp)

    if not settings.api_keys and not settings.google_client_id:
        log.warning("API_KEYS is empty: every /v1 request will be refused with 401")
    for stage, error in services.templates.errors.items():
        log.error("template for stage %s is broken: %s", stage, error)
    return app


def _authenticate_v1(app: Flask, settings: Settings) -> None:
    """Every /v1 request proves who it is; each caller, and each address failing to, is
    rate-limited. Order matters: the caller is identified (a failure kept, not raised), then
    Flask-Limiter counts the request against the caller or, for a failed proof, the client
    address; only then is the failure answered (401), so that guessing keys ends in 429."""
    authenticator = Authenticator(settings)

    @app.before_request
    def _identify() -> None:
        g.caller = g.auth_error = None
        if request.path.startswith("/v1/"):
            try:
                # The caller's scopes are checked by each view, once it knows the scope.
                g.caller = authenticator.identify(request)
            except ApiError as exc:
                g.auth_error = exc

    limiter = Limiter(
        get_remote_address,
        app=app,
        storage_uri="memory://",
        headers_enabled=True,
        # The limits guard this process; a proxy in front is the place for a cluster-wide one.
        strategy="moving-window",
    )
    per_caller = settings.rate_limit_per_minute
    # Shared limits: one count across every /v1 route, not one per route.
    failures = limiter.shared_limit(
        f"{settings.auth_failures_per_minute}/minute",
        scope="failed_authentication",
        key_func=get_remote_address,
        deduct_when=lambda response: response.status_code == 401,
    )
    calls = limiter.shared_limit(
        f"{max(per_caller, 1)}/minute",
        scope="caller",
        key_func=lambda: g.caller.identity if g.caller else get_remote_address(),
        exempt_when=lambda: per_caller == 0 or g.auth_error is not None,
    )
    for module in _BLUEPRINTS:
        failures(module.blp)
        calls(module.blp)

    @app.before_request
    def _refuse_unproven() -> None:
        if g.get("auth_error") is not None:
            raise g.auth_error
