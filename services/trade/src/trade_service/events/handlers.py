"""Handlers of the order events trade reacts to, ready for the messaging core's consumer.

Each takes the consumer's session (which also holds the inbox row) and the
parsed payload, applies trade's part of the saga through the domain, and
returns the payloads to publish through the outbox in the same transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.events import (
    ORDER_EVENTS,
    EventData,
    OrderCancelled,
    OrderCreated,
    OrderPaid,
    OrderRejected,
)
from trade_service.domain.saga import consume_for_order, lock_for_order, release_for_order

E = TypeVar("E", bound=EventData)

Handler = Callable[[AsyncSession, EventData], Awaitable[list[EventData]]]

CONSUMER_GROUP = "trade"
"""The consumer group trade reads order-events with."""


def _expect(event: EventData, kind: type[E]) -> E:
    if not isinstance(event, kind):
        raise TypeError(f"expected {kind.__name__}, got {type(event).__name__}")
    return event


async def on_order_created(session: AsyncSession, event: EventData) -> list[EventData]:
    """order.created: lock the coupon and points; reply trade.locked or trade.rejected."""
    return [await lock_for_order(session, _expect(event, OrderCreated))]


async def on_order_paid(session: AsyncSession, event: EventData) -> list[EventData]:
    """order.paid: consume the coupon and points, award points; publish points.changed."""
    return [*await consume_for_order(session, _expect(event, OrderPaid))]


async def on_order_rejected(session: AsyncSession, event: EventData) -> list[EventData]:
    """order.rejected: release the coupon and points held for the order."""
    return [*await release_for_order(session, _expect(event, OrderRejected))]


async def on_order_cancelled(session: AsyncSession, event: EventData) -> list[EventData]:
    """order.cancelled: give back the coupon and refund the locked points."""
    return [*await release_for_order(session, _expect(event, OrderCancelled))]


HANDLERS: dict[str, Handler] = {
    OrderCreated.event_type: on_order_created,
    OrderPaid.event_type: on_order_paid,
    OrderRejected.event_type: on_order_rejected,
    OrderCancelled.event_type: on_order_cancelled,
}
"""Handler per event type (the message tag) on the ``order-events`` topic."""

SUBSCRIPTION = (ORDER_EVENTS, tuple(HANDLERS))
"""The topic and tags trade's consumer group subscribes to."""
