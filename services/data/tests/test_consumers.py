"""The consumer handler on received envelopes: each event type, once, through the inbox."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from data_service.events.handlers import CONSUMER_GROUPS, consume
from data_service.repository.models import (
    InboxEvent,
    OrderFact,
    OrderLineFact,
    ProductFact,
    RawEvent,
    UserFact,
)
from meshmart_common.db import Database
from meshmart_common.events import (
    EventData,
    OrderCancelled,
    OrderCreated,
    OrderLine,
    OrderPaid,
    PointsChanged,
    ProductCreated,
    StockReserved,
    UserRegistered,
)
from meshmart_common.messaging.consumer import (
    AlreadyHandled,
    IncomingEvent,
    PermanentEventError,
    handle_once,
)
from meshmart_common.messaging.envelope import CloudEvent

AT = datetime(2026, 4, 2, 9, 30, tzinfo=UTC)
GROUPS = {group.topic: group.name for group in CONSUMER_GROUPS}


def incoming(event: CloudEvent, topic: str) -> IncomingEvent:
    """``event`` as the runner of the data group reading ``topic`` hands it over."""
    return IncomingEvent(
        envelope=event,
        consumer_group=GROUPS[topic],
        topic=topic,
        message_id=f"msg-{uuid.uuid4().hex}",
        key=event.subject or event.id,
    )


def received(data: EventData, *, event_id: str | None = None) -> IncomingEvent:
    envelope = data.to_event(
        source="/meshmart/test", subject=data.aggregate_key(), event_id=event_id, time=AT
    )
    return incoming(envelope, data.topic)


async def deliver(database: Database, event: IncomingEvent) -> None:
    """One delivery as the runner does it: inbox row and handler in one transaction."""
    await handle_once(database, InboxEvent, consume, event)


async def count(database: Database, model: type[Any]) -> int:
    async with database.session(read_only=True) as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


LINES = [OrderLine(product_id=5, quantity=2, unit_price_cents=1250)]


def order_created(order_id: int = 40) -> OrderCreated:
    return OrderCreated(
        order_id=order_id,
        user_id=7,
        lines=LINES,
        subtotal_cents=2500,
        discount_cents=0,
        points_to_redeem=0,
        total_cents=2500,
        created_at=AT,
    )


def order_paid(order_id: int = 40, total_cents: int = 2400) -> OrderPaid:
    return OrderPaid(
        order_id=order_id,
        user_id=7,
        lines=LINES,
        total_cents=total_cents,
        discount_cents=100,
        points_redeemed=0,
        paid_at=AT,
    )


async def test_user_registered_counts_the_user(database: Database) -> None:
    await deliver(
        database, received(UserRegistered(user_id=7, email="u@example.com", registered_at=AT))
    )
    async with database.session(read_only=True) as session:
        user = await session.get(UserFact, 7)
        inbox = (await session.scalars(select(InboxEvent))).one()
    assert user is not None
    assert user.registered_at == AT
    assert inbox.consumer_group == "data-all-user-events"
    assert inbox.event_type == "user.registered"


async def test_product_created_keeps_the_title(database: Database) -> None:
    await deliver(
        database,
        received(
            ProductCreated(
                product_id=5, sku="SKU-5", title="Kettle", price_cents=1250, category_id=2
            )
        ),
    )
    async with database.session(read_only=True) as session:
        product = await session.get(ProductFact, 5)
    assert product is not None
    assert (product.sku, product.title, product.deleted) == ("SKU-5", "Kettle", False)


async def test_order_created_then_paid_then_cancelled_moves_the_order(database: Database) -> None:
    await deliver(database, received(order_created()))
    async with database.session(read_only=True) as session:
        order = await session.get(OrderFact, 40)
        assert order is not None
        assert (order.status, order.total_cents, order.user_id) == ("PENDING", 2500, 7)

    await deliver(database, received(order_paid()))
    async with database.session(read_only=True) as session:
        order = await session.get(OrderFact, 40)
        assert order is not None
        assert (order.status, order.total_cents, order.paid_at) == ("PAID", 2400, AT)
        lines = list(await session.scalars(select(OrderLineFact)))
    assert [(line.product_id, line.quantity) for line in lines] == [(5, 2)]

    await deliver(
        database,
        received(OrderCancelled(order_id=40, user_id=7, reason="changed mind", cancelled_at=AT)),
    )
    async with database.session(read_only=True) as session:
        order = await session.get(OrderFact, 40)
    assert order is not None
    assert (order.status, order.reason) == ("CANCELLED", "changed mind")


@pytest.mark.parametrize(
    "data",
    [
        PointsChanged(user_id=7, delta=25, balance=125, reason="earned", order_id=40),
        StockReserved(order_id=40),
    ],
    ids=["points.changed", "stock.reserved"],
)
async def test_events_without_a_projection_land_in_the_raw_log(
    database: Database, data: EventData
) -> None:
    await deliver(database, received(data, event_id="evt-raw-1"))
    async with database.session(read_only=True) as session:
        row = (await session.scalars(select(RawEvent))).one()
    assert (row.event_id, row.event_type, row.key) == (
        "evt-raw-1",
        data.event_type,
        data.aggregate_key(),
    )
    assert row.data == data.model_dump(mode="json")
    assert await count(database, OrderFact) == 0


async def test_a_redelivered_event_takes_effect_once(database: Database) -> None:
    await deliver(database, received(order_created(), event_id="evt-created"))
    await deliver(database, received(order_paid(total_cents=2400), event_id="evt-paid"))
    # The same event id again, as a new message; its data differs so that a
    # second application would show in the order's total.
    with pytest.raises(AlreadyHandled):
        await deliver(database, received(order_paid(total_cents=9999), event_id="evt-paid"))
    async with database.session(read_only=True) as session:
        order = await session.get(OrderFact, 40)
    assert order is not None
    assert order.total_cents == 2400
    assert await count(database, InboxEvent) == 2
    assert await count(database, RawEvent) == 2


async def test_an_unknown_type_is_kept_in_the_raw_log_and_does_not_fail(
    database: Database,
) -> None:
    envelope = CloudEvent(
        id="evt-new-type",
        source="/meshmart/user",
        type="user.deactivated",
        time=AT,
        subject="7",
        data={"user_id": 7, "why": "asked"},
    )
    await deliver(database, incoming(envelope, "user-events"))
    async with database.session(read_only=True) as session:
        row = (await session.scalars(select(RawEvent))).one()
    assert (row.event_type, row.key, row.occurred_at) == ("user.deactivated", "7", AT)
    assert row.data == {"user_id": 7, "why": "asked"}
    assert await count(database, UserFact) == 0
    assert await count(database, InboxEvent) == 1


async def test_invalid_data_of_a_known_type_is_permanent_and_writes_nothing(
    database: Database,
) -> None:
    envelope = CloudEvent(
        id="evt-bad",
        source="/meshmart/order",
        type="order.paid",
        time=AT,
        subject="40",
        data={"order_id": "forty"},
    )
    with pytest.raises(PermanentEventError, match=r"order\.paid"):
        await deliver(database, incoming(envelope, "order-events"))
    assert await count(database, InboxEvent) == 0
    assert await count(database, RawEvent) == 0
    assert await count(database, OrderFact) == 0
