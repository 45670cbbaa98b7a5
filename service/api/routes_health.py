"""Liveness."""

from __future__ import annotations

from flask.views import MethodView

from service.api.blueprint import Blueprint
from service.api.schemas import HealthSchema

blp = Blueprint("health", __name__, description="Liveness")


@blp.route("/healthz")
class Health(MethodView):
    @blp.doc(security=[])
    @blp.response(200, HealthSchema)
    def get(self) -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}
