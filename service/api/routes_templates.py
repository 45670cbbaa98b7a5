"""The stage templates and their load errors."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from service.api import services
from service.api.blueprint import Blueprint
from service.api.schemas import ErrorResponseSchema, TemplatesResponseSchema
from service.rendering import MERGE_FIELDS

blp = Blueprint("templates", __name__, url_prefix="/v1", description="Stage templates")


@blp.route("/templates")
class Templates(MethodView):
    @blp.response(200, TemplatesResponseSchema)
    @blp.alt_response(401, schema=ErrorResponseSchema)
    def get(self) -> dict[str, Any]:
        """Every stage, its template and any load error."""
        templates = services().templates
        return {
            "stages": sorted(templates.templates),
            "merge_fields": sorted(MERGE_FIELDS),
            "templates": [
                {
                    "stage": stage,
                    "file": t.path.name,
                    "ok": t.error is None,
                    "error": t.error,
                    "fields_used": sorted(t.fields),
                    "subject": t.source.partition("\n")[0].removeprefix("Subject:").strip()
                    if t.source.startswith("Subject:")
                    else None,
                    "source": t.source,
                }
                for stage, t in sorted(templates.templates.items())
            ],
            "errors": {str(k): v for k, v in templates.errors.items()},
        }
