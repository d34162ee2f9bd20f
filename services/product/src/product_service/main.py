"""The product service app."""

from __future__ import annotations

from fastapi import FastAPI

from meshmart_common.app import create_app
from product_service.api import ROUTERS
from product_service.settings import Settings

OPENAPI_TAGS = [
    {"name": "categories", "description": "The shelves of the catalogue."},
    {"name": "products", "description": "Search, product detail, admin edits and stock."},
    {"name": "reviews", "description": "1-5 star reviews, one per user and product."},
]


def build_app(settings: Settings) -> FastAPI:
    """Create the product app for settings."""
    return create_app(
        settings,
        title="MeshMart product service",
        description=(
            "Catalogue, search, reviews and stock. Prices are integer cents (`price_cents`); "
            "errors are RFC 9457 problem details."
        ),
        routers=ROUTERS,
        openapi_tags=OPENAPI_TAGS,
    )


def app_factory() -> FastAPI:
    """Entry point for `uvicorn --factory product_service.main:app_factory`."""
    return build_app(Settings())
