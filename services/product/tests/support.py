"""Helpers of the event tests: deliver order events, read the outbox, read stock."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from meshmart_common.db import Database
from meshmart_common.events import (
    EventData,
    OrderCancelled,
    OrderCreated,
    OrderLine,
    OrderPaid,
    OrderRejected,
)
from meshmart_common.messaging.consumer import EventHandler, IncomingEvent, handle_once
from meshmart_common.messaging.envelope import CloudEvent
from meshmart_common.testing import outbox_rows
from product_service.events.handlers import ORDER_EVENTS_GROUP
from product_service.repository.models import (
    InboxEvent,
    OutboxEvent,
    Product,
    Purchase,
    StockReservation,
)

ORDER_SOURCE = "/meshmart/order"


@dataclass(frozen=True, slots=True)
class Published:
    """One outbox row: its columns and its parsed envelope."""

    topic: str
    event_type: str
    message_key: str
    event: CloudEvent

    @property
    def data(self) -> dict[str, Any]:
        """The envelope's data."""
        return self.event.data


async def outbox(database: Database, *event_types: str) -> list[Published]:
    """The outbox rows in id order (of ``event_types`` when given), parsed."""
    rows = await outbox_rows(database, OutboxEvent, *event_types)
    return [
        Published(
            topic=row.topic,
            event_type=row.event_type,
            message_key=row.message_key,
            event=CloudEvent.from_json(row.body),
        )
        for row in rows
    ]


def incoming(payload: EventData, *, event_id: str | None = None) -> IncomingEvent:
    """``payload`` as the product-order-events group receives it from the order service."""
    envelope = payload.to_event(
        source=ORDER_SOURCE, subject=payload.aggregate_key(), event_id=event_id
    )
    return IncomingEvent(
        envelope=envelope,
        consumer_group=ORDER_EVENTS_GROUP,
        topic=payload.topic,
        message_id=uuid.uuid4().hex,
        key=payload.aggregate_key(),
    )


async def deliver(
    database: Database,
    handler: EventHandler,
    payload: EventData,
    *,
    event_id: str | None = None,
) -> IncomingEvent:
    """Handle ``payload`` once like the consumer does (inbox row and effect in one transaction)."""
    event = incoming(payload, event_id=event_id)
    await handle_once(database, InboxEvent, handler, event)
    return event


def lines(*items: tuple[int, int]) -> list[OrderLine]:
    """Order lines from (product id, quantity) pairs, at 10.00 each."""
    return [
        OrderLine(product_id=product_id, quantity=quantity, unit_price_cents=1000)
        for product_id, quantity in items
    ]


def order_created(order_id: int, *items: tuple[int, int], user_id: int = 7) -> OrderCreated:
    """order.created for (product id, quantity) lines."""
    order_lines = lines(*items)
    subtotal = sum(line.quantity * line.unit_price_cents for line in order_lines)
    return OrderCreated(
        order_id=order_id,
        user_id=user_id,
        lines=order_lines,
        subtotal_cents=subtotal,
        discount_cents=0,
        points_to_redeem=0,
        total_cents=subtotal,
        created_at=datetime.now(UTC),
    )


def order_paid(order_id: int, *items: tuple[int, int], user_id: int = 7) -> OrderPaid:
    """order.paid for (product id, quantity) lines."""
    order_lines = lines(*items)
    total = sum(line.quantity * line.unit_price_cents for line in order_lines)
    return OrderPaid(
        order_id=order_id,
        user_id=user_id,
        lines=order_lines,
        total_cents=total,
        discount_cents=0,
        points_redeemed=0,
        paid_at=datetime.now(UTC),
    )


def order_rejected(order_id: int, user_id: int = 7) -> OrderRejected:
    """order.rejected (trade said no)."""
    return OrderRejected(order_id=order_id, user_id=user_id, reason="trade_rejected: coupon")


def order_cancelled(order_id: int, user_id: int = 7) -> OrderCancelled:
    """order.cancelled by the customer."""
    return OrderCancelled(
        order_id=order_id,
        user_id=user_id,
        reason="cancelled_by_customer",
        cancelled_at=datetime.now(UTC),
    )


async def stock(database: Database, product_id: int) -> tuple[int, int]:
    """The product's (on_hand, reserved) as committed."""
    async with database.session(read_only=True) as session:
        row = (
            await session.execute(
                select(Product.on_hand, Product.reserved).where(Product.id == product_id)
            )
        ).one()
    return int(row.on_hand), int(row.reserved)


async def reservations(database: Database, order_id: int) -> dict[int, tuple[int, str]]:
    """The order's reservations: product id -> (quantity, state)."""
    async with database.session(read_only=True) as session:
        rows = await session.scalars(
            select(StockReservation).where(StockReservation.order_id == order_id)
        )
        return {row.product_id: (row.quantity, row.state) for row in rows}


async def purchases(database: Database) -> set[tuple[int, int, int]]:
    """Every purchase as (user id, product id, order id)."""
    async with database.session(read_only=True) as session:
        rows = await session.scalars(select(Purchase))
        return {(row.user_id, row.product_id, row.order_id) for row in rows}
