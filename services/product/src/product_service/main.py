"""The product service app."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from meshmart_common.app import create_app
from meshmart_common.errors import PROBLEM_JSON
from product_service.api import ROUTERS
from product_service.settings import Settings

OPENAPI_TAGS = [
    {"name": "categories", "description": "The shelves of the catalogue."},
    {"name": "products", "description": "Search, product detail, admin edits and stock."},
    {"name": "reviews", "description": "1-5 star reviews, one per user and product."},
]


def _problem_media_types(schema: dict[str, Any]) -> dict[str, Any]:
    # Error responses are sent as application/problem+json; say so in the schema
    # (FastAPI documents every response under the route's own media type).
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            for code, response in operation.get("responses", {}).items():
                if not str(code).startswith(("4", "5")):
                    continue
                content = response.setdefault("content", {})
                content.pop("application/json", None)
                content[PROBLEM_JSON] = {"schema": problem_ref}
    return schema


def _install_problem_openapi(app: FastAPI) -> None:
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _problem_media_types(default_openapi())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def build_app(settings: Settings) -> FastAPI:
    """Create the product app for settings."""
    app = create_app(
        settings,
        title="MeshMart product service",
        description=(
            "Catalogue, search, reviews and stock. Prices are integer cents (`price_cents`); "
            "errors are RFC 9457 problem details."
        ),
        routers=ROUTERS,
        openapi_tags=OPENAPI_TAGS,
    )
    _install_problem_openapi(app)
    return app


def app_factory() -> FastAPI:
    """Entry point for `uvicorn --factory product_service.main:app_factory`."""
    return build_app(Settings())
