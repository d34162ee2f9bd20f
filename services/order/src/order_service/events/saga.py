"""The saga replies order reacts to, and the consumer groups that receive them.

Order runs three consumer groups of the topology (meshmart_common.messaging.topology):

- ``order-stock-replies`` on product-events: stock.reserved, stock.rejected
- ``order-trade-replies`` on trade-events: trade.locked, trade.rejected
- ``order-payment-timeouts`` on order-timeouts: order.payment_timeout (the
  delayed message order itself scheduled when the order started awaiting payment)

Each group's handler is an EventDispatcher whose handlers call
:func:`handle_saga_event` in the session in which the consumer records the
event id in its inbox: the order change, the events it implies (written to the
outbox through the EventSink) and the inbox row commit together, so a
redelivered reply changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.events import (
    EventData,
    OrderPaymentTimeout,
    StockRejected,
    StockReserved,
    TradeLocked,
    TradeRejected,
)
from meshmart_common.messaging.consumer import ConsumerSpec, EventDispatcher, IncomingEvent
from meshmart_common.messaging.topology import consumer_group
from order_service.components import Components
from order_service.domain.orders import OrderService
from order_service.domain.outbox_port import OutgoingEvent, emit_all

CONSUMER_GROUPS: Mapping[str, tuple[type[EventData], ...]] = {
    "order-stock-replies": (StockReserved, StockRejected),
    "order-trade-replies": (TradeLocked, TradeRejected),
    "order-payment-timeouts": (OrderPaymentTimeout,),
}
"""Consumer group (declared in the topology) -> the payloads order handles in it."""

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


def saga_consumers(components: Components) -> list[ConsumerSpec]:
    """Order's consumer groups, each an EventDispatcher over :func:`handle_saga_event`.

    The handlers read ``components`` at each event, so what tests swap in there
    (clock, settings) applies to them too.
    """

    async def apply(session: AsyncSession, payload: EventData, event: IncomingEvent) -> None:
        await handle_saga_event(session, payload, components)

    specs: list[ConsumerSpec] = []
    for name, payloads in CONSUMER_GROUPS.items():
        dispatcher = EventDispatcher()
        for payload in payloads:
            dispatcher.add(payload, apply)
        specs.append(ConsumerSpec(consumer_group(name), dispatcher))
    return specs
