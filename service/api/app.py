"""The Flask application factory. Gunicorn runs ``service.api.app:create_app()``."""

from __future__ import annotations

import logging

from flask import Flask, g, request
from flask_smorest import Api

from service.api import routes_drafts, routes_health, routes_plan, routes_templates
from service.api.auth import Authenticator
from service.api.errors import register_error_handlers
from service.api.jsonio import OrjsonProvider
from service.api.ratelimit import RateLimiter
from service.api.routes_runs import blp as runs_blp
from service.api.schemas import ErrorResponseSchema
from service.bootstrap import Services, build_services
from service.config import Settings, load_settings
from service.logging_setup import configure_logging

log = logging.getLogger(__name__)


class _Api(Api):  # type: ignore[misc]
    """flask-smorest's Api with our single error shape instead of its own."""

    # Documents every error response (the default one, the 422 of @blp.arguments) in the
    # shape errors.py sends; flask-smorest would otherwise describe its own, unused, shape.
    ERROR_SCHEMA = ErrorResponseSchema

    def _register_error_handlers(self) -> None:
        # register_error_handlers() below owns every HTTPException.
        pass


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    """Build the app from ``settings`` (default: the environment and `.env`)."""
    if services is None:
        services = build_services(settings or load_settings())
    settings = services.settings
    # JSON lines on stdout for gunicorn too, with every configured secret masked should one
    # ever reach a log line.
    configure_logging(
        settings.log_level,
        secrets=[
            *settings.api_keys,
            *(v for v in (settings.stripe_api_key, settings.slack_webhook_url) if v),
        ],
    )

    app = Flask(__name__)
    app.json = OrjsonProvider(app)
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

    api = _Api(app)
    api.spec.components.security_scheme(
        "bearerAuth",
        {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key, or a Google ID token when GOOGLE_CLIENT_ID is set",
        },
    )
    api.spec.components.security_scheme(
        "googleAccessToken",
        {"type": "apiKey", "in": "header", "name": "X-Google-Access-Token"},
    )
    register_error_handlers(app)

    api.register_blueprint(routes_health.blp)
    api.register_blueprint(routes_plan.blp)
    api.register_blueprint(routes_templates.blp)
    api.register_blueprint(routes_drafts.blp)
    api.register_blueprint(runs_blp)

    authenticator = Authenticator.from_settings(settings)
    limiter = RateLimiter(settings.rate_limit_per_minute)

    @app.before_request
    def _authenticate() -> None:
        if request.path.startswith("/v1/"):
            g.identity = authenticator.identify(request)
            limiter.check(g.identity)  # per key or Google identity, after it is proven

    if not settings.api_keys and not settings.google_client_id:
        log.warning("API_KEYS is empty: every /v1 request will be refused with 401")
    for stage, error in services.templates.errors.items():
        log.error("template for stage %s is broken: %s", stage, error)
    return app
