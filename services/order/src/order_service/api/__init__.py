"""order service: api layer (routers, request/response schemas, dependencies)."""

from fastapi import APIRouter

from order_service.api import cart, orders

ROUTERS: tuple[APIRouter, ...] = (cart.router, orders.router)
"""Every router of the order API, mounted under /api/v1."""
