"""Trade's consumer of order events: the saga steps, dispatched and published through the outbox.

The consumer group ``trade-order-events`` reads the ``order-events`` topic
with the tags ``order.created``, ``order.paid``, ``order.rejected`` and
``order.cancelled``. For each event the consumer opens one transaction,
inserts the inbox row, runs the step below and adds the step's replies
(trade.locked / trade.rejected / points.changed) to the outbox: the effect,
the "handled" mark and the replies commit together, or not at all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.events import (
    EventData,
    OrderCancelled,
    OrderCreated,
    OrderPaid,
    OrderRejected,
)
from meshmart_common.messaging.consumer import ConsumerSpec, EventDispatcher, IncomingEvent
from meshmart_common.messaging.outbox import EventPublisher
from meshmart_common.messaging.topology import ConsumerGroupSpec, consumer_group
from trade_service.domain.saga import consume_for_order, lock_for_order, release_for_order
from trade_service.events.publisher import publish_all

E = TypeVar("E", bound=EventData)

Handler = Callable[[AsyncSession, EventData], Awaitable[list[EventData]]]
"""A saga step: apply the event in the session, return the payloads to publish."""

ORDER_EVENTS_GROUP: ConsumerGroupSpec = consumer_group("trade-order-events")
"""The consumer group trade reads order-events with (declared in the topology)."""


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


PAYLOADS: tuple[type[EventData], ...] = (OrderCreated, OrderPaid, OrderRejected, OrderCancelled)
"""The order events trade handles, in saga order."""

HANDLERS: dict[str, Handler] = {
    OrderCreated.event_type: on_order_created,
    OrderPaid.event_type: on_order_paid,
    OrderRejected.event_type: on_order_rejected,
    OrderCancelled.event_type: on_order_cancelled,
}
"""The saga step per event type (the message tag) on the ``order-events`` topic."""

SUBSCRIPTION = (ORDER_EVENTS_GROUP.topic, ORDER_EVENTS_GROUP.tags)
"""The topic and tags trade's consumer group subscribes to."""


def _publishing(
    step: Handler, publisher: EventPublisher
) -> Callable[[AsyncSession, EventData, IncomingEvent], Awaitable[None]]:
    async def handle(session: AsyncSession, payload: EventData, event: IncomingEvent) -> None:
        await publish_all(publisher, session, await step(session, payload))

    handle.__name__ = handle.__qualname__ = step.__name__
    handle.__doc__ = step.__doc__
    return handle


def order_events_dispatcher(publisher: EventPublisher) -> EventDispatcher:
    """The handler of ``trade-order-events``: each saga step, its replies into the outbox."""
    dispatcher = EventDispatcher()
    for payload in PAYLOADS:
        dispatcher.add(payload, _publishing(HANDLERS[payload.event_type], publisher))
    return dispatcher


def order_events_consumer(publisher: EventPublisher) -> ConsumerSpec:
    """Trade's consumer of order events, for messaging_lifespan and the dead-letter admin."""
    return ConsumerSpec(ORDER_EVENTS_GROUP, order_events_dispatcher(publisher))
