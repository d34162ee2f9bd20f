"""Handlers of the consumer group ``product-order-events`` (the checkout saga on order-events).

Each handler runs in the consumer's transaction, which also records the event
in the inbox (so a redelivered event changes nothing); its replies go to the
outbox in that transaction.

| event | effect |
|---|---|
| order.created | reserve every line or none; reply stock.reserved or stock.rejected |
| order.rejected, order.cancelled | release what the order still holds |
| order.paid | commit the reserved stock; record purchases; verify reviews |
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.events import OrderCancelled, OrderCreated, OrderPaid, OrderRejected
from meshmart_common.messaging.consumer import (
    ConsumerSpec,
    EventDispatcher,
    IncomingEvent,
    PermanentEventError,
)
from meshmart_common.messaging.outbox import EventPublisher
from meshmart_common.messaging.topology import consumer_group
from product_service.domain.stock import StockService

ORDER_EVENTS_GROUP = "product-order-events"
"""The consumer group (topology) through which product follows order-events."""

MAX_ORDER_ID = 2**63 - 1


def _check_order_id(order_id: int) -> None:
    # Ids are BIGINT columns here: an id outside them can never be handled.
    if not 0 < order_id <= MAX_ORDER_ID:
        raise PermanentEventError(f"order id {order_id} is out of range")


def order_event_handlers(publisher: EventPublisher) -> EventDispatcher:
    """The dispatcher of the order-events group; replies are written through ``publisher``."""
    handlers = EventDispatcher()

    @handlers.on(OrderCreated)
    async def reserve_stock(session: AsyncSession, order: OrderCreated, _: IncomingEvent) -> None:
        _check_order_id(order.order_id)
        await StockService(session, publisher).reserve_order(order)

    @handlers.on(OrderRejected)
    async def release_rejected(
        session: AsyncSession, order: OrderRejected, _: IncomingEvent
    ) -> None:
        _check_order_id(order.order_id)
        await StockService(session, publisher).release_order(order.order_id)

    @handlers.on(OrderCancelled)
    async def release_cancelled(
        session: AsyncSession, order: OrderCancelled, _: IncomingEvent
    ) -> None:
        _check_order_id(order.order_id)
        await StockService(session, publisher).release_order(order.order_id)

    @handlers.on(OrderPaid)
    async def commit_stock(session: AsyncSession, order: OrderPaid, _: IncomingEvent) -> None:
        _check_order_id(order.order_id)
        await StockService(session, publisher).commit_order(order)

    return handlers


def product_consumers(publisher: EventPublisher) -> list[ConsumerSpec]:
    """The consumer groups the product service runs, with their handlers."""
    return [ConsumerSpec(consumer_group(ORDER_EVENTS_GROUP), order_event_handlers(publisher))]
