"""The data service's event handler, for the messaging consumer runner.

The runner calls ``await handle_event(session, event)`` inside the transaction
that also writes its inbox row. ``event`` only needs ``id``, ``type``,
``time`` and ``data`` (a CloudEvents envelope); ``data`` may be the parsed
payload model or its JSON object.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from data_service.domain.ingest import ingest
from data_service.repository.models import utc_now
from meshmart_common.events import EVENT_TYPES, ORDER_TIMEOUTS, EventData

CONSUMER_GROUP = "data-analytics"
"""The data service's consumer group on every topic it reads."""


def _subscriptions() -> dict[str, frozenset[str]]:
    topics: dict[str, set[str]] = {}
    for event_type, model in EVENT_TYPES.items():
        if model.topic != ORDER_TIMEOUTS:
            topics.setdefault(model.topic, set()).add(event_type)
    return {topic: frozenset(tags) for topic, tags in topics.items()}


SUBSCRIPTIONS: dict[str, frozenset[str]] = _subscriptions()
"""Topic -> tags (event types) the data service consumes: every domain event.

The order service's payment-timeout DELAY topic is left out: it is a timer,
not a domain event; its outcome arrives as order.cancelled.
"""


class IncomingEvent(Protocol):
    """The parts of a received CloudEvents envelope that ingest needs."""

    @property
    def id(self) -> str:
        """The event id (unique per event, stable across redeliveries)."""
        ...

    @property
    def type(self) -> str:
        """The event type, e.g. ``order.paid``."""
        ...

    @property
    def time(self) -> datetime | None:
        """When the event happened (CloudEvents ``time``)."""
        ...

    @property
    def data(self) -> Any:
        """The payload: an EventData model or its JSON object."""
        ...


def parse_data(event_type: str, data: Any) -> EventData:
    """The payload model of ``data``; ValueError for an unknown type or an invalid payload."""
    model = EVENT_TYPES.get(event_type)
    if model is None:
        raise ValueError(f"unknown event type {event_type!r}")
    if isinstance(data, model):
        return data
    if isinstance(data, Mapping):
        return model.model_validate(dict(data))
    raise ValueError(f"payload of {event_type!r} must be a JSON object")


async def handle_event(session: AsyncSession, event: IncomingEvent) -> None:
    """Ingest one received event into the analytics tables (a replayed id changes nothing)."""
    await ingest(
        session,
        event.type,
        event.id,
        event.time if event.time is not None else utc_now(),
        parse_data(event.type, event.data),
    )
