"""The product service app."""

from fastapi import FastAPI

from meshmart_common.app import create_app
from product_service.settings import Settings


def build_app(settings: Settings) -> FastAPI:
    """Create the product app for settings."""
    return create_app(
        settings,
        title="MeshMart product service",
        description="Catalogue, search, reviews and stock.",
    )


def app_factory() -> FastAPI:
    """Entry point for `uvicorn --factory product_service.main:app_factory`."""
    return build_app(Settings())
