"""The saga replies order reacts to, ready for the consumers of meshmart_common.messaging.

Order subscribes to (topic: tags)

- product-events: stock.reserved, stock.rejected
- trade-events: trade.locked, trade.rejected
- order-timeouts: order.payment_timeout (the delayed message order itself scheduled)

A consumer calls :func:`handle_saga_event` with the parsed payload and the
session in which it records the event id in its inbox: the order change, the
events it implies (through the outbox port) and the inbox row then commit
together, so a redelivered reply changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.events import (
    ORDER_TIMEOUTS,
    PRODUCT_EVENTS,
    TRADE_EVENTS,
    EventData,
    OrderPaymentTimeout,
    StockRejected,
    StockReserved,
    TradeLocked,
    TradeRejected,
)
from order_service.components import Components
from order_service.domain.orders import OrderService
from order_service.domain.outbox_port import OutgoingEvent, emit_all

SUBSCRIPTIONS: Mapping[str, tuple[str, ...]] = {
    PRODUCT_EVENTS: (StockReserved.event_type, StockRejected.event_type),
    TRADE_EVENTS: (TradeLocked.event_type, TradeRejected.event_type),
    ORDER_TIMEOUTS: (OrderPaymentTimeout.event_type,),
}
"""Topic -> the tags (event types) order consumes from it."""

_Reaction = Callable[[OrderService, Any], Awaitable[list[OutgoingEvent]]]

_REACTIONS: Mapping[type[EventData], _Reaction] = {
    StockReserved: OrderService.on_stock_reserved,
    StockRejected: OrderService.on_stock_rejected,
    TradeLocked: OrderService.on_trade_locked,
    TradeRejected: OrderService.on_trade_rejected,
    OrderPaymentTimeout: OrderService.on_payment_timeout,
}


async def react(orders: OrderService, payload: EventData) -> list[OutgoingEvent]:
    """Apply a saga reply to its order; the events the change implies (none for a no-op).

    ValueError for a payload order does not consume.
    """
    reaction = _REACTIONS.get(type(payload))
    if reaction is None:
        raise ValueError(f"order does not consume {payload.event_type}")
    return await reaction(orders, payload)


async def handle_saga_event(
    session: AsyncSession, payload: EventData, components: Components
) -> list[OutgoingEvent]:
    """React to ``payload`` in ``session`` and hand the resulting events to the outbox port."""
    orders = OrderService(
        session, clock=components.clock, payment_timeout=components.payment_timeout
    )
    events = await react(orders, payload)
    await emit_all(components.event_sink, session, events)
    return events
