"""The data service app."""

from fastapi import FastAPI

from data_service.settings import Settings
from meshmart_common.app import create_app


def build_app(settings: Settings) -> FastAPI:
    """Create the data app for settings."""
    return create_app(
        settings,
        title="MeshMart data service",
        description=(
            "Analytics over every domain event: stats, time series and reports. "
            "Its business API arrives with the checkout saga."
        ),
    )


def app_factory() -> FastAPI:
    """Entry point for `uvicorn --factory data_service.main:app_factory`."""
    return build_app(Settings())
