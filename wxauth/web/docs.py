"""Blueprint `docs`: the API document, ``GET /openapi.json``, and Swagger UI at ``/docs``.

Both are served only with ``API_DOCS=1`` (the default); ``API_DOCS=0`` leaves them out (404).
Swagger UI's files come from the flask-swagger-ui package (Swagger UI 5), served by this app:
the page needs nothing from the internet (no CDN, no validator badge).

The document is flask-smorest's (`wxauth.extensions.api`), plus a ``servers`` entry so that
tools importing it (Apifox, YApi, Postman) know where to send requests: ``API_BASE_URL`` when
set, else the URL root the document was requested at (as forwarded by
``TRUSTED_PROXIES``).
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Flask, current_app, request
from flask_swagger_ui import get_swaggerui_blueprint

from ..extensions import api

DOCUMENT_PATH = "/openapi.json"
UI_PATH = "/docs"
# flask-smorest documents pagination whether or not a view paginates; none here does
UNUSED_SCHEMAS = ("PaginationMetadata",)

blp = Blueprint("docs", __name__)


@blp.get(DOCUMENT_PATH)
def openapi_document():
    """The OpenAPI 3 document of this API (JSON)."""
    body = document(current_app.config.get("API_BASE_URL") or request.url_root)
    return current_app.response_class(json.dumps(body, ensure_ascii=False, indent=1),
                                      mimetype="application/json")


def document(server_url: str) -> dict[str, Any]:
    """The OpenAPI document as a dict, its ``servers`` entry pointing at `server_url`."""
    spec = api.spec.to_dict()
    components = dict(spec.pop("components", {}))  # (a copy: apispec keeps the dicts inside)
    components["schemas"] = {name: schema
                             for name, schema in components.get("schemas", {}).items()
                             if name not in UNUSED_SCHEMAS}
    return {"openapi": spec.pop("openapi"), "info": spec.pop("info"),
            "servers": [{"url": server_url.rstrip("/")}], **spec, "components": components}


def register_docs(app: Flask) -> None:
    """Serve /openapi.json and /docs when ``API_DOCS`` is on."""
    if not app.config["API_DOCS"]:
        return
    app.register_blueprint(blp)
    app.register_blueprint(get_swaggerui_blueprint(
        UI_PATH, DOCUMENT_PATH, blueprint_name="swagger_ui", config={
            "app_name": f"{app.config['API_TITLE']} API",
            "validatorUrl": None,  # no badge fetched from validator.swagger.io
            "displayOperationId": True,
        }))
