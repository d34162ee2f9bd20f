"""The outbox: events are written with the transaction that made them, or not at all."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi import APIRouter, FastAPI
from httpx import AsyncClient
from sqlalchemy import func, select

from meshmart_common.db import Database
from meshmart_common.events import OrderPaymentTimeout, OrderShipped
from meshmart_common.messaging.envelope import CloudEvent
from order_service.api.deps import CartsDep, CheckoutDep, OrdersDep, OutboxDep
from order_service.domain.outbox_port import OutgoingEvent, emit_all
from order_service.events.outbox import OutboxSink, not_before, order_publisher
from order_service.repository.models import CartItem, OutboxEvent
from services.order.tests.events import outgoing


def a_line(user_id: int) -> CartItem:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    return CartItem(
        user_id=user_id,
        product_id=1,
        quantity=1,
        title="Thing",
        unit_price_cents=100,
        created_at=now,
        updated_at=now,
    )


async def outbox_rows(database: Database) -> list[OutboxEvent]:
    async with database.session() as session:
        return list(await session.scalars(select(OutboxEvent).order_by(OutboxEvent.id)))


async def test_events_are_written_to_the_outbox_with_their_change(database: Database) -> None:
    sink = OutboxSink(order_publisher())
    deliver_at = datetime(2030, 1, 1, 12, 15, tzinfo=UTC)
    events = [
        OutgoingEvent(OrderShipped(order_id=1, user_id=7)),
        OutgoingEvent(OrderPaymentTimeout(order_id=1), deliver_at=deliver_at),
    ]

    async with database.session() as session:
        session.add(a_line(7))
        await emit_all(sink, session, events)

    rows = await outbox_rows(database)
    assert [outgoing(row) for row in rows] == events
    assert [(r.topic, r.event_type, r.message_key, r.deliver_at, r.sent_at) for r in rows] == [
        ("order-events", "order.shipped", "1", None, None),
        ("order-timeouts", "order.payment_timeout", "1", deliver_at, None),
    ]
    envelope = CloudEvent.from_json(rows[0].body)
    assert (envelope.source, envelope.type, envelope.subject, envelope.id) == (
        "/meshmart/order",
        "order.shipped",
        "1",
        rows[0].event_id,
    )
    assert envelope.data == {"order_id": 1, "user_id": 7}


async def test_events_of_a_rolled_back_transaction_are_not_written(database: Database) -> None:
    sink = OutboxSink(order_publisher())

    async def change_then_fail() -> None:
        async with database.session() as session:
            session.add(a_line(8))
            await session.flush()
            await sink.emit(session, OrderShipped(order_id=2, user_id=8))
            raise RuntimeError("the request failed after the change")

    with pytest.raises(RuntimeError, match="failed after the change"):
        await change_then_fail()

    assert await outbox_rows(database) == []
    async with database.session(read_only=True) as session:
        assert await session.scalar(select(func.count()).select_from(CartItem)) == 0


async def test_a_delayed_event_is_never_delivered_early(database: Database) -> None:
    sink = OutboxSink(order_publisher())
    async with database.session() as session:
        await sink.emit(
            session,
            OrderPaymentTimeout(order_id=3),
            datetime(2030, 1, 1, 12, 15, 0, 1, tzinfo=UTC),
        )

    [row] = await outbox_rows(database)
    # Whole seconds survive every database; rounding down would fire before pay_by.
    assert row.deliver_at == datetime(2030, 1, 1, 12, 15, 1, tzinfo=UTC)
    assert not_before(datetime(2030, 1, 1, 12, 15, tzinfo=UTC)) == datetime(
        2030, 1, 1, 12, 15, tzinfo=UTC
    )


async def test_the_app_emits_into_the_outbox_its_relay_publishes(
    app: FastAPI, client: AsyncClient
) -> None:
    sink = app.state.components.event_sink
    assert isinstance(sink, OutboxSink)
    assert sink.publisher.outbox is OutboxEvent
    assert app.state.outbox_relay.signal is sink.publisher.signal


async def test_routes_emit_on_the_session_of_their_change(
    app: FastAPI, client: AsyncClient, customer_headers: dict[str, str]
) -> None:
    # The route's outbox and its domain services share the request's session,
    # so the events of a change commit (or roll back) with it.
    probe = APIRouter()

    @probe.get("/probe-sessions")
    async def sessions(
        carts: CartsDep, checkout: CheckoutDep, orders: OrdersDep, outbox: OutboxDep
    ) -> dict[str, bool]:
        """Whether every dependency got the same session."""
        used = {id(carts.carts.session), id(checkout.orders.session), id(orders.orders.session)}
        return {"shared": used == {id(outbox.session)}}

    app.include_router(probe)
    response = await client.get("/probe-sessions", headers=customer_headers)
    assert response.json() == {"shared": True}
