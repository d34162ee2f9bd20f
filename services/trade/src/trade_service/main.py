"""The trade service app."""

from fastapi import FastAPI

from meshmart_common.app import create_app
from trade_service.settings import Settings


def build_app(settings: Settings) -> FastAPI:
    """Create the trade app for settings."""
    return create_app(
        settings,
        title="MeshMart trade service",
        description=(
            "Points ledger, coupon campaigns and checkout quotes. "
            "Its business API arrives with the checkout saga."
        ),
    )


def app_factory() -> FastAPI:
    """Entry point for `uvicorn --factory trade_service.main:app_factory`."""
    return build_app(Settings())
