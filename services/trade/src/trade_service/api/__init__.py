"""trade service: api layer (routers, request/response schemas, dependencies)."""

from fastapi import APIRouter

from trade_service.api import campaigns, coupons, points, quotes

ROUTERS: tuple[APIRouter, ...] = (
    points.router,
    campaigns.router,
    coupons.router,
    quotes.router,
)
"""Every router of the trade API, mounted under /api/v1."""
