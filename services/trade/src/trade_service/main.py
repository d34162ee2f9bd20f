"""The trade service app."""

from __future__ import annotations

from fastapi import FastAPI

from meshmart_common.app import create_app
from trade_service.api import ROUTERS
from trade_service.settings import Settings

OPENAPI_TAGS = [
    {"name": "points", "description": "The caller's points balance and history; admin grants."},
    {"name": "coupon campaigns", "description": "Coupon campaigns and their counters (admin)."},
    {"name": "coupons", "description": "Claiming coupons and listing the caller's coupons."},
    {"name": "quotes", "description": "Checkout prices after a coupon and points."},
]


def build_app(settings: Settings) -> FastAPI:
    """Create the trade app for settings."""
    return create_app(
        settings,
        title="MeshMart trade service",
        description=(
            "Points ledger, coupon campaigns, coupons and checkout quotes. Money is integer "
            "cents; 1 point redeems 1 cent and 1 point is earned per 100 cents paid. Errors "
            "are RFC 9457 problem details."
        ),
        routers=ROUTERS,
        openapi_tags=OPENAPI_TAGS,
    )


def app_factory() -> FastAPI:
    """Entry point for `uvicorn --factory trade_service.main:app_factory`."""
    return build_app(Settings())
