"""The data service app."""

from __future__ import annotations

from fastapi import FastAPI

from data_service.api import ROUTERS
from data_service.settings import Settings
from meshmart_common.app import create_app

OPENAPI_TAGS = [
    {"name": "stats", "description": "Overview, sales time series and top products (admin)."},
    {"name": "reports", "description": "Daily reports as JSON or CSV (admin)."},
]


def build_app(settings: Settings) -> FastAPI:
    """Create the data app for settings."""
    return create_app(
        settings,
        title="MeshMart data service",
        description=(
            "Analytics over every domain event: overview stats, a sales time series, "
            "top products and daily reports (JSON or CSV). Admin only. Money is integer "
            "cents, times are UTC; errors are RFC 9457 problem details."
        ),
        routers=ROUTERS,
        openapi_tags=OPENAPI_TAGS,
    )


def app_factory() -> FastAPI:
    """Entry point for `uvicorn --factory data_service.main:app_factory`."""
    return build_app(Settings())
