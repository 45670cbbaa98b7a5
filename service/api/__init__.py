"""The HTTP API: create_app() in app.py, one blueprint module per resource."""

from __future__ import annotations

from flask import current_app

from service.bootstrap import Services


def services() -> Services:
    """The Services the running app was built with."""
    return current_app.extensions["invoice_collector"]  # type: ignore[no-any-return]
