"""Access to the per-app Services from inside a request."""

from __future__ import annotations

from flask import Flask

from service.bootstrap import Services


def services(app: Flask) -> Services:
    """The Services the app was built with."""
    return app.extensions["invoice_collector"]  # type: ignore[no-any-return]
