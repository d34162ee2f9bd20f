"""The product service app."""

from __future__ import annotations

from fastapi import FastAPI

from meshmart_common.app import create_app
from meshmart_common.messaging.dead_letters import dead_letter_router
from meshmart_common.messaging.lifespan import bus_factory, messaging_lifespan
from product_service.api import ROUTERS
from product_service.events.handlers import product_consumers
from product_service.events.publishing import new_publisher
from product_service.repository.models import DeadLetter, InboxEvent
from product_service.settings import Settings

OPENAPI_TAGS = [
    {"name": "categories", "description": "The shelves of the catalogue."},
    {"name": "products", "description": "Search, product detail, admin edits and stock."},
    {"name": "reviews", "description": "1-5 star reviews, one per user and product."},
    {
        "name": "dead letters",
        "description": "Order events whose handling keeps failing: list, replay, discard (admin).",
    },
]


def build_app(settings: Settings) -> FastAPI:
    """Create the product app for settings.

    Its lifespan runs the bus, the outbox relay (events of API changes and
    saga replies) and the consumer of order-events (the checkout saga).
    """
    publisher = new_publisher()
    consumers = product_consumers(publisher)
    app = create_app(
        settings,
        title="MeshMart product service",
        description=(
            "Catalogue, search, reviews and stock. Prices are integer cents (`price_cents`); "
            "errors are RFC 9457 problem details."
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
    """Entry point for `uvicorn --factory product_service.main:app_factory`."""
    return build_app(Settings())
