"""The order service app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from meshmart_common.app import LifespanHook, create_app
from meshmart_common.live_config import COMMON_LIVE_KEYS
from meshmart_common.messaging.dead_letters import dead_letter_router
from meshmart_common.messaging.lifespan import bus_factory, messaging_lifespan
from order_service.api import ROUTERS
from order_service.components import Components
from order_service.domain.clock import SystemClock
from order_service.events.metrics import OrderMetrics
from order_service.events.outbox import OutboxSink, order_publisher
from order_service.events.saga import saga_consumers
from order_service.gateways.upstreams import Upstreams
from order_service.repository.models import DeadLetter, InboxEvent
from order_service.settings import Settings

OPENAPI_TAGS = [
    {"name": "cart", "description": "The caller's cart, priced live by the product service."},
    {
        "name": "orders",
        "description": "Checkout (with Idempotency-Key), orders, payment, cancel, ship, complete.",
    },
    {
        "name": "dead letters",
        "description": "Saga replies whose handling keeps failing: list, replay, discard (admin).",
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


def _discovered_upstreams(
    components: Components, settings: Settings, http: httpx.AsyncClient
) -> LifespanHook:
    """Point the product and trade clients at the instances discovery finds."""

    @asynccontextmanager
    async def hook(app: FastAPI) -> AsyncIterator[None]:
        components.upstreams = Upstreams.from_resolver(
            app.state.resolver,
            settings,
            http,
            balancer=app.state.balancer,
            metrics=app.state.upstream_metrics,
        )
        yield

    return hook


def build_app(settings: Settings) -> FastAPI:
    """Create the order app for settings."""
    # One connection pool for every call to product and trade.
    http = httpx.AsyncClient(limits=httpx.Limits(max_connections=100, max_keepalive_connections=20))
    publisher = order_publisher()
    business_metrics = OrderMetrics()
    components = Components(
        settings=settings,
        clock=SystemClock(),
        # Events go into the outbox in the transaction of their change.
        event_sink=OutboxSink(publisher, metrics=business_metrics),
        upstreams=Upstreams.from_settings(settings, http),
    )
    consumers = saga_consumers(components)
    app = create_app(
        settings,
        title="MeshMart order service",
        description=(
            "Cart, checkout, orders and payment. Money is integer cents (`*_cents`); errors "
            "are RFC 9457 problem details. Titles and prices come live from the product "
            "service, discounts from a trade quote."
        ),
        routers=[
            *ROUTERS,
            dead_letter_router(dead_letters=DeadLetter, inbox=InboxEvent, consumers=consumers),
        ],
        upstreams={"product": settings.product_url, "trade": settings.trade_url},
        lifespan_hooks=[
            _closing(http),
            _discovered_upstreams(components, settings, http),
            messaging_lifespan(
                bus_factory(settings, settings.var_dir),
                publisher=publisher,
                consumers=consumers,
                inbox=InboxEvent,
                dead_letters=DeadLetter,
                relay_settings=settings.relay_settings(),
                consumer_settings=settings.consumer_settings(),
            ),
        ],
        openapi_tags=OPENAPI_TAGS,
        live_keys=(*COMMON_LIVE_KEYS, "payment_timeout_seconds", "rate_limit_checkout_per_minute"),
    )
    business_metrics.export_to(app.state.metrics.registry)
    app.state.order_metrics = business_metrics
    app.state.components = components
    app.state.consumers = consumers
    return app


def app_factory() -> FastAPI:
    """Entry point for `uvicorn --factory order_service.main:app_factory`."""
    return build_app(Settings())
