"""The data service app."""

from __future__ import annotations

from fastapi import FastAPI

from data_service.api import ROUTERS
from data_service.events.handlers import CONSUMERS
from data_service.repository.models import DeadLetter, InboxEvent
from data_service.settings import Settings
from meshmart_common.app import create_app
from meshmart_common.messaging.dead_letters import dead_letter_router
from meshmart_common.messaging.lifespan import bus_factory, messaging_lifespan

OPENAPI_TAGS = [
    {"name": "stats", "description": "Overview, sales time series and top products (admin)."},
    {"name": "reports", "description": "Daily reports as JSON or CSV (admin)."},
    {
        "name": "audit",
        "description": "The audit log: logins, password changes and admin changes (admin).",
    },
    {
        "name": "dead letters",
        "description": "Events the consumers could not handle: list, replay, discard (admin).",
    },
]


def build_app(settings: Settings) -> FastAPI:
    """Create the data app for settings; its consumers run while the app does."""
    return create_app(
        settings,
        title="MeshMart data service",
        description=(
            "Analytics over every domain event: overview stats, a sales time series, "
            "top products and daily reports (JSON or CSV), and the audit log of every "
            "service. Admin only. Money is integer cents, times are UTC; errors are "
            "RFC 9457 problem details."
        ),
        routers=[
            *ROUTERS,
            dead_letter_router(dead_letters=DeadLetter, inbox=InboxEvent, consumers=CONSUMERS),
        ],
        # The data service consumes every event and publishes none (no outbox).
        lifespan_hooks=[
            messaging_lifespan(
                bus_factory(settings, settings.var_dir),
                consumers=CONSUMERS,
                inbox=InboxEvent,
                dead_letters=DeadLetter,
                consumer_settings=settings.consumer_settings(),
            )
        ],
        openapi_tags=OPENAPI_TAGS,
    )


def app_factory() -> FastAPI:
    """Entry point for `uvicorn --factory data_service.main:app_factory`."""
    return build_app(Settings())
