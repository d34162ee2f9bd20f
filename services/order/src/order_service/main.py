"""The order service app."""

from fastapi import FastAPI

from meshmart_common.app import create_app
from order_service.settings import Settings


def build_app(settings: Settings) -> FastAPI:
    """Create the order app for settings."""
    return create_app(
        settings,
        title="MeshMart order service",
        description=(
            "Cart, checkout, orders and payment. Its business API arrives with the checkout saga."
        ),
    )


def app_factory() -> FastAPI:
    """Entry point for `uvicorn --factory order_service.main:app_factory`."""
    return build_app(Settings())
