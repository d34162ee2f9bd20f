"""The order service app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from meshmart_common.app import LifespanHook, create_app
from order_service.api import ROUTERS
from order_service.components import Components
from order_service.domain.clock import SystemClock
from order_service.domain.outbox_port import InMemoryOutbox
from order_service.gateways.upstreams import Upstreams
from order_service.settings import Settings

OPENAPI_TAGS = [
    {"name": "cart", "description": "The caller's cart, priced live by the product service."},
    {
        "name": "orders",
        "description": "Checkout (with Idempotency-Key), orders, payment, cancel, ship, complete.",
    },
]


def _closing(client: httpx.AsyncClient) -> LifespanHook:
    @asynccontextmanager
    async def hook(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await client.aclose()

    return hook


def build_app(settings: Settings) -> FastAPI:
    """Create the order app for settings."""
    # One connection pool for every call to product and trade.
    http = httpx.AsyncClient(limits=httpx.Limits(max_connections=100, max_keepalive_connections=20))
    app = create_app(
        settings,
        title="MeshMart order service",
        description=(
            "Cart, checkout, orders and payment. Money is integer cents (`*_cents`); errors "
            "are RFC 9457 problem details. Titles and prices come live from the product "
            "service, discounts from a trade quote."
        ),
        routers=ROUTERS,
        lifespan_hooks=[_closing(http)],
        openapi_tags=OPENAPI_TAGS,
    )
    app.state.components = Components(
        settings=settings,
        clock=SystemClock(),
        # The port to the transactional outbox: swap in the messaging outbox here.
        event_sink=InMemoryOutbox(),
        upstreams=Upstreams.from_settings(settings, http),
    )
    return app


def app_factory() -> FastAPI:
    """Entry point for `uvicorn --factory order_service.main:app_factory`."""
    return build_app(Settings())
