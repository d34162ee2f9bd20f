"""The outbox port: events go out with the transaction that made them, or not at all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from fastapi import APIRouter, FastAPI
from httpx import AsyncClient
from sqlalchemy import func, select

from meshmart_common.db import Database
from meshmart_common.events import OrderPaymentTimeout, OrderShipped
from order_service.api.deps import CartsDep, CheckoutDep, OrdersDep, OutboxDep
from order_service.domain.outbox_port import EventSink, InMemoryOutbox, OutgoingEvent, emit_all
from order_service.repository.models import CartItem


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """The order database, without the app."""
    db = Database(database_url)
    try:
        yield db
    finally:
        await db.dispose()


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


async def test_events_are_kept_once_their_transaction_commits(database: Database) -> None:
    outbox = InMemoryOutbox()
    deliver_at = datetime(2030, 1, 1, 12, 15, tzinfo=UTC)
    events = [
        OutgoingEvent(OrderShipped(order_id=1, user_id=7)),
        OutgoingEvent(OrderPaymentTimeout(order_id=1), deliver_at=deliver_at),
    ]

    async with database.session() as session:
        session.add(a_line(7))
        await emit_all(outbox, session, events)
        assert outbox.committed == []  # not before the commit

    assert outbox.committed == events
    assert outbox.of_type(OrderPaymentTimeout) == [OrderPaymentTimeout(order_id=1)]


async def test_events_of_a_rolled_back_transaction_are_dropped(database: Database) -> None:
    outbox = InMemoryOutbox()

    async def change_then_fail() -> None:
        async with database.session() as session:
            session.add(a_line(8))
            await session.flush()
            await outbox.emit(session, OrderShipped(order_id=2, user_id=8))
            raise RuntimeError("the request failed after the change")

    with pytest.raises(RuntimeError, match="failed after the change"):
        await change_then_fail()

    assert outbox.committed == []
    async with database.session(read_only=True) as session:
        assert await session.scalar(select(func.count()).select_from(CartItem)) == 0


async def test_after_a_rollback_only_the_later_events_commit(database: Database) -> None:
    outbox = InMemoryOutbox()
    async with database.session() as session:
        await outbox.emit(session, OrderShipped(order_id=3, user_id=9))
        await session.rollback()
        await outbox.emit(session, OrderShipped(order_id=4, user_id=9))

    assert outbox.of_type(OrderShipped) == [OrderShipped(order_id=4, user_id=9)]


async def test_each_session_keeps_its_own_events(database: Database) -> None:
    outbox = InMemoryOutbox()
    async with database.session() as first:
        await outbox.emit(first, OrderShipped(order_id=5, user_id=1))
        async with database.session() as second:
            await outbox.emit(second, OrderShipped(order_id=6, user_id=1))
        assert [e.payload.aggregate_key() for e in outbox.committed] == ["6"]
    assert [e.payload.aggregate_key() for e in outbox.committed] == ["6", "5"]


def test_the_in_memory_outbox_is_an_event_sink() -> None:
    sink: EventSink = InMemoryOutbox()
    assert sink is not None


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
