"""product service: api layer (routers, request/response schemas, dependencies)."""

from fastapi import APIRouter

from product_service.api import categories, products, reviews

ROUTERS: tuple[APIRouter, ...] = (categories.router, products.router, reviews.router)
"""Every router of the product API, mounted under /api/v1."""
