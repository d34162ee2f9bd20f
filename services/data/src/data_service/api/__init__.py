"""data service: api layer (routers, response schemas, dependencies)."""

from fastapi import APIRouter

from data_service.api import audit, reports, stats

ROUTERS: tuple[APIRouter, ...] = (stats.router, reports.router, audit.router)
"""Every router of the data API, mounted under /api/v1."""
