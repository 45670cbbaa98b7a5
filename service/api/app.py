"""The Flask application factory. Gunicorn runs ``service.api.app:create_app()``."""

from __future__ import annotations

import logging

from flask import Flask, g, request
from flask_smorest import Api

from service.api import routes_drafts, routes_health, routes_plan, routes_templates
from service.api.auth import require_api_key
from service.api.errors import register_error_handlers
from service.api.jsonio import OrjsonProvider
from service.bootstrap import Services, build_services
from service.config import Settings, load_settings

log = logging.getLogger(__name__)


class _Api(Api):  # type: ignore[misc]
    """flask-smorest's Api with our single error shape instead of its own."""

    def _register_error_handlers(self) -> None:
        # register_error_handlers() below owns every HTTPException.
        pass


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    """Build the app from ``settings`` (default: the environment and `.env`)."""
    if services is None:
        services = build_services(settings or load_settings())
    settings = services.settings

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
        "bearerAuth", {"type": "http", "scheme": "bearer", "description": "An API key"}
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

    @app.before_request
    def _authenticate() -> None:
        if request.path.startswith("/v1/"):
            g.identity = require_api_key(request, settings.api_keys)

    if not settings.api_keys:
        log.warning("API_KEYS is empty: every /v1 request will be refused with 401")
    for stage, error in services.templates.errors.items():
        log.error("template for stage %s is broken: %s", stage, error)
    return app
