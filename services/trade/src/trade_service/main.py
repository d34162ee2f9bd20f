"""The trade app: the API, and the event backbone (outbox relay, order-events consumer)."""

from __future__ import annotations

from fastapi import FastAPI

from meshmart_common.app import create_app
from meshmart_common.messaging.dead_letters import dead_letter_router
from meshmart_common.messaging.lifespan import bus_factory, messaging_lifespan
from trade_service.api import ROUTERS
from trade_service.events.handlers import order_events_consumer
from trade_service.events.publisher import new_publisher
from trade_service.repository.models import DeadLetter, InboxEvent
from trade_service.settings import Settings

OPENAPI_TAGS = [
    {"name": "points", "description": "The caller's points balance and history; admin grants."},
    {"name": "coupon campaigns", "description": "Coupon campaigns and their counters (admin)."},
    {"name": "coupons", "description": "Claiming coupons and listing the caller's coupons."},
    {"name": "quotes", "description": "Checkout prices after a coupon and points."},
    {
        "name": "dead letters",
        "description": "Order events trade could not handle: list, replay, discard (admin).",
    },
]


def build_app(settings: Settings) -> FastAPI:
    """Create the trade app for settings.

    ``app.state.publisher`` writes trade's events into its outbox; at start-up
    the messaging hook opens the bus, starts the outbox relay and the
    ``trade-order-events`` consumer (the checkout saga).
    """
    publisher = new_publisher()
    consumers = [order_events_consumer(publisher)]
    app = create_app(
        settings,
        title="MeshMart trade service",
        description=(
            "Points ledger, coupon campaigns, coupons and checkout quotes. Money is integer "
            "cents; 1 point redeems 1 cent and 1 point is earned per 100 cents paid. Errors "
            "are RFC 9457 problem details."
        ),
        routers=[
            *ROUTERS,
            dead_letter_router(dead_letters=DeadLetter, inbox=InboxEvent, consumers=consumers),
        ],
        openapi_tags=OPENAPI_TAGS,
        lifespan_hooks=[
            messaging_lifespan(
                bus_factory(settings, settings.var_dir),
                publisher=publisher,
                consumers=consumers,
                inbox=InboxEvent,
                dead_letters=DeadLetter,
                relay_settings=settings.relay_settings(),
                consumer_settings=settings.consumer_settings(),
            )
        ],
    )
    app.state.publisher = publisher
    return app


def app_factory() -> FastAPI:
    """Entry point for `uvicorn --factory trade_service.main:app_factory`."""
    return build_app(Settings())
