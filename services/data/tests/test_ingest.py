"""Ingest: events in any order, replays, forward-only statuses, the raw log."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from data_service.domain.ingest import MAX_STORED_PAYLOAD_CHARS, ingest
from data_service.domain.orders import OrderStatus, next_status
from data_service.repository.models import (
    OrderFact,
    OrderLineFact,
    ProductFact,
    RawEvent,
    UserFact,
)
from meshmart_common.db import Database
from meshmart_common.events import (
    CouponClaimed,
    EventData,
    OrderAwaitingPayment,
    OrderCancelled,
    OrderCompleted,
    OrderCreated,
    OrderLine,
    OrderPaid,
    OrderRejected,
    OrderShipped,
    ProductCreated,
    ProductUpdated,
    StockChanged,
    StockReserved,
    TradeLocked,
    UserRegistered,
)

IngestEvent = Callable[..., Awaitable[bool]]

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
LINES = [
    OrderLine(product_id=7, quantity=2, unit_price_cents=1500),
    OrderLine(product_id=8, quantity=1, unit_price_cents=999),
]


def created(order_id: int = 1, lines: list[OrderLine] = LINES, **overrides: Any) -> OrderCreated:
    fields: dict[str, Any] = {
        "order_id": order_id,
        "user_id": 42,
        "lines": lines,
        "subtotal_cents": 3999,
        "discount_cents": 500,
        "points_to_redeem": 100,
        "total_cents": 3399,
        "coupon_code": "SPRING",
        "created_at": T0,
    }
    return OrderCreated(**{**fields, **overrides})


def paid(order_id: int = 1, lines: list[OrderLine] = LINES, **overrides: Any) -> OrderPaid:
    fields: dict[str, Any] = {
        "order_id": order_id,
        "user_id": 42,
        "lines": lines,
        "total_cents": 3399,
        "discount_cents": 500,
        "points_redeemed": 100,
        "coupon_code": "SPRING",
        "paid_at": T0 + timedelta(minutes=5),
    }
    return OrderPaid(**{**fields, **overrides})


async def load_order(database: Database, order_id: int = 1) -> OrderFact:
    async with database.session(read_only=True) as session:
        order = await session.get(OrderFact, order_id)
        assert order is not None
        return order


async def load_lines(database: Database, order_id: int = 1) -> list[tuple[int, int, int, int]]:
    async with database.session(read_only=True) as session:
        rows = await session.execute(
            select(
                OrderLineFact.line_no,
                OrderLineFact.product_id,
                OrderLineFact.quantity,
                OrderLineFact.unit_price_cents,
            )
            .where(OrderLineFact.order_id == order_id)
            .order_by(OrderLineFact.line_no)
        )
        return [(a, b, c, d) for a, b, c, d in rows]


async def count_rows(database: Database, model: type[Any]) -> int:
    async with database.session(read_only=True) as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_order_paid_before_created_ends_paid_with_every_field_filled(
    database: Database, ingest_event: IngestEvent
) -> None:
    assert await ingest_event(paid(), at=T0 + timedelta(minutes=5))
    early = await load_order(database)
    assert early.status == OrderStatus.PAID
    assert early.created_at is None
    assert early.subtotal_cents is None
    assert early.total_cents == 3399

    assert await ingest_event(created(), at=T0)

    order = await load_order(database)
    assert order.status == OrderStatus.PAID
    assert order.user_id == 42
    assert order.created_at == T0
    assert order.paid_at == T0 + timedelta(minutes=5)
    assert (order.subtotal_cents, order.discount_cents, order.total_cents) == (3999, 500, 3399)
    assert order.points_redeemed == 100
    assert order.coupon_code == "SPRING"
    assert order.last_event_at == T0 + timedelta(minutes=5)
    assert await load_lines(database) == [(1, 7, 2, 1500), (2, 8, 1, 999)]


async def test_paid_amounts_and_lines_win_over_the_created_ones_in_either_order(
    database: Database, ingest_event: IngestEvent
) -> None:
    paid_lines = [OrderLine(product_id=7, quantity=1, unit_price_cents=1500)]
    # order 1: created first; order 2: paid first. Both end with the paid view.
    await ingest_event(created(1))
    await ingest_event(paid(1, lines=paid_lines, total_cents=1000, discount_cents=500))
    await ingest_event(paid(2, lines=paid_lines, total_cents=1000, discount_cents=500))
    await ingest_event(created(2))

    for order_id in (1, 2):
        order = await load_order(database, order_id)
        assert (order.subtotal_cents, order.discount_cents, order.total_cents) == (3999, 500, 1000)
        assert await load_lines(database, order_id) == [(1, 7, 1, 1500)]


async def test_reingesting_an_event_id_changes_nothing(
    database: Database, ingest_event: IngestEvent
) -> None:
    assert await ingest_event(created(), event_id="evt-1", at=T0)
    # The same id again, even with another payload, is a no-op.
    assert not await ingest_event(created(total_cents=1), event_id="evt-1", at=T0)
    assert not await ingest_event(created(), event_id="evt-1", at=T0)
    user = UserRegistered(user_id=5, email="e@example.com", registered_at=T0)
    assert await ingest_event(user, event_id="evt-2")
    assert not await ingest_event(user, event_id="evt-2")

    order = await load_order(database)
    assert order.total_cents == 3399
    assert await load_lines(database) == [(1, 7, 2, 1500), (2, 8, 1, 999)]
    assert await count_rows(database, RawEvent) == 2
    assert await count_rows(database, UserFact) == 1
    assert await count_rows(database, OrderLineFact) == 2


async def test_a_second_registration_event_of_a_user_counts_once(
    database: Database, ingest_event: IngestEvent
) -> None:
    user = UserRegistered(user_id=5, email="e@example.com", registered_at=T0)
    assert await ingest_event(user, event_id="a")
    assert await ingest_event(user, event_id="b")
    assert await count_rows(database, UserFact) == 1
    assert await count_rows(database, RawEvent) == 2


def shipped(order_id: int = 1) -> OrderShipped:
    return OrderShipped(order_id=order_id, user_id=42)


def completed(order_id: int = 1) -> OrderCompleted:
    return OrderCompleted(order_id=order_id, user_id=42)


def awaiting(order_id: int = 1) -> OrderAwaitingPayment:
    return OrderAwaitingPayment(order_id=order_id, user_id=42, total_cents=3399, pay_by=T0)


def cancelled(order_id: int = 1) -> OrderCancelled:
    return OrderCancelled(order_id=order_id, user_id=42, reason="by customer", cancelled_at=T0)


def rejected(order_id: int = 1) -> OrderRejected:
    return OrderRejected(order_id=order_id, user_id=42, reason="out of stock")


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([created(), awaiting(), paid(), shipped(), completed()], OrderStatus.COMPLETED),
        ([shipped(), awaiting(), created()], OrderStatus.SHIPPED),
        ([completed(), paid(), shipped(), created()], OrderStatus.COMPLETED),
        ([paid(), awaiting()], OrderStatus.PAID),
        ([awaiting(), created()], OrderStatus.AWAITING_PAYMENT),
        ([cancelled(), awaiting(), created()], OrderStatus.CANCELLED),
        ([awaiting(), cancelled(), created()], OrderStatus.CANCELLED),
        ([rejected(), created()], OrderStatus.REJECTED),
        ([created(), rejected(), cancelled()], OrderStatus.REJECTED),
    ],
)
async def test_status_only_moves_forward_and_final_statuses_stay(
    database: Database, ingest_event: IngestEvent, events: list[EventData], expected: OrderStatus
) -> None:
    for event in events:
        await ingest_event(event)
    assert (await load_order(database)).status == expected


@pytest.mark.parametrize(
    ("current", "reported", "expected"),
    [
        (OrderStatus.PENDING, OrderStatus.AWAITING_PAYMENT, OrderStatus.AWAITING_PAYMENT),
        (OrderStatus.SHIPPED, OrderStatus.PAID, OrderStatus.SHIPPED),
        (OrderStatus.COMPLETED, OrderStatus.PENDING, OrderStatus.COMPLETED),
        (OrderStatus.AWAITING_PAYMENT, OrderStatus.CANCELLED, OrderStatus.CANCELLED),
        (OrderStatus.CANCELLED, OrderStatus.COMPLETED, OrderStatus.CANCELLED),
        (OrderStatus.REJECTED, OrderStatus.CANCELLED, OrderStatus.REJECTED),
        (OrderStatus.PENDING, OrderStatus.REJECTED, OrderStatus.REJECTED),
    ],
)
def test_next_status_ranks_progress_and_keeps_final_statuses(
    current: OrderStatus, reported: OrderStatus, expected: OrderStatus
) -> None:
    assert next_status(current, reported) == expected


async def test_events_without_their_own_time_are_dated_by_the_envelope(
    database: Database, ingest_event: IngestEvent
) -> None:
    await ingest_event(created(), at=T0)
    await ingest_event(paid(), at=T0 + timedelta(minutes=5))
    await ingest_event(shipped(), at=T0 + timedelta(hours=2))
    await ingest_event(completed(), at=T0 + timedelta(days=3))
    await ingest_event(rejected(2), at=T0 + timedelta(minutes=1))
    order = await load_order(database)
    assert order.shipped_at == T0 + timedelta(hours=2)
    assert order.completed_at == T0 + timedelta(days=3)
    other = await load_order(database, 2)
    assert other.status == OrderStatus.REJECTED
    assert other.rejected_at == T0 + timedelta(minutes=1)
    assert other.reason == "out of stock"
    assert other.total_cents is None


async def test_envelope_times_with_an_offset_or_none_are_stored_in_utc(
    database: Database, ingest_event: IngestEvent
) -> None:
    naive = T0.replace(tzinfo=None)  # taken as UTC
    await ingest_event(shipped(1), at=naive)
    await ingest_event(shipped(2), at=datetime.fromisoformat("2026-05-04T11:00:00+02:00"))
    first = await load_order(database, 1)
    second = await load_order(database, 2)
    assert first.shipped_at == T0
    assert second.shipped_at == T0


async def test_product_title_is_the_one_of_the_latest_event(
    database: Database, ingest_event: IngestEvent
) -> None:
    def product(event: type[ProductCreated | ProductUpdated], title: str) -> EventData:
        return event(product_id=3, sku="BK-3", title=title, price_cents=100, category_id=1)

    # The update (later) arrives before the create (earlier): the update's title stays.
    await ingest_event(product(ProductUpdated, "Second edition"), at=T0 + timedelta(hours=1))
    await ingest_event(product(ProductCreated, "First edition"), at=T0)
    async with database.session(read_only=True) as session:
        stored = await session.get(ProductFact, 3)
    assert stored is not None
    assert (stored.title, stored.sku, stored.deleted) == ("Second edition", "BK-3", False)

    deleted = ProductUpdated(
        product_id=3, sku="BK-3", title="Gone", price_cents=100, category_id=1, deleted=True
    )
    await ingest_event(deleted, at=T0 + timedelta(hours=2))
    async with database.session(read_only=True) as session:
        stored = await session.get(ProductFact, 3)
    assert stored is not None
    assert (stored.title, stored.deleted) == ("Gone", True)


async def test_raw_log_keeps_type_key_time_and_payload_of_every_event(
    database: Database, ingest_event: IngestEvent
) -> None:
    events: list[EventData] = [
        StockChanged(product_id=7, on_hand=3, reserved=1, reason="reserve"),
        StockReserved(order_id=1),
        TradeLocked(order_id=1, discount_cents=500, points_locked=100),
        CouponClaimed(user_id=42, campaign_id=9, code="SPRING"),
    ]
    for number, event in enumerate(events):
        await ingest_event(event, event_id=f"raw-{number}", at=T0 + timedelta(seconds=number))
    async with database.session(read_only=True) as session:
        rows = (await session.scalars(select(RawEvent).order_by(RawEvent.id))).all()
    assert [(r.event_id, r.event_type, r.key) for r in rows] == [
        ("raw-0", "stock.changed", "7"),
        ("raw-1", "stock.reserved", "1"),
        ("raw-2", "trade.locked", "1"),
        ("raw-3", "coupon.claimed", "42"),
    ]
    assert [r.occurred_at for r in rows] == [T0 + timedelta(seconds=n) for n in range(4)]
    assert rows[0].data == {"product_id": 7, "on_hand": 3, "reserved": 1, "reason": "reserve"}
    # These events feed no fact table.
    assert await count_rows(database, OrderFact) == 0


async def test_an_oversized_payload_is_stored_as_a_size_marker(
    database: Database, ingest_event: IngestEvent
) -> None:
    many = [OrderLine(product_id=n, quantity=1, unit_price_cents=1) for n in range(1, 601)]
    await ingest_event(created(lines=many), event_id="big")
    async with database.session(read_only=True) as session:
        row = (await session.scalars(select(RawEvent))).one()
    assert row.data["truncated"] is True
    assert row.data["size"] > MAX_STORED_PAYLOAD_CHARS
    # The facts still have every line.
    assert await count_rows(database, OrderLineFact) == 600


async def test_ingest_refuses_a_type_that_is_not_the_payloads_or_a_bad_id(
    database: Database,
) -> None:
    async with database.session() as session:
        with pytest.raises(ValueError, match="does not match"):
            await ingest(session, "order.paid", "x", T0, created())
        with pytest.raises(ValueError, match="event id"):
            await ingest(session, "order.created", "", T0, created())
        with pytest.raises(ValueError, match="event id"):
            await ingest(session, "order.created", "x" * 129, T0, created())
    assert await count_rows(database, RawEvent) == 0


async def test_concurrent_events_of_one_order_and_of_many_orders_all_apply(
    database: Database, ingest_event: IngestEvent
) -> None:
    # Each ingest runs in its own transaction, as concurrent consumers would.
    other_lines = [OrderLine(product_id=9, quantity=3, unit_price_cents=10)]
    for order_id in range(2, 22):
        await ingest_event(created(order_id))
    batch: list[EventData] = [created(1), paid(1), shipped(1), awaiting(1)]
    batch += [paid(n, lines=LINES if n % 2 else other_lines) for n in range(2, 22)]
    batch += [
        ProductUpdated(product_id=3, sku="BK-3", title=f"v{n}", price_cents=1, category_id=1)
        for n in range(5)
    ]
    results = await asyncio.gather(*(ingest_event(event) for event in batch))
    assert all(results)
    assert (await load_order(database, 1)).status == OrderStatus.SHIPPED
    assert await load_lines(database, 1) == [(1, 7, 2, 1500), (2, 8, 1, 999)]
    assert await load_lines(database, 2) == [(1, 9, 3, 10)]
    assert await load_lines(database, 3) == [(1, 7, 2, 1500), (2, 8, 1, 999)]
    assert await count_rows(database, OrderFact) == 21
    assert await count_rows(database, OrderLineFact) == 2 * 11 + 10
    assert await count_rows(database, ProductFact) == 1


async def test_the_same_event_delivered_twice_at_once_applies_once(
    database: Database, ingest_event: IngestEvent
) -> None:
    results = await asyncio.gather(*(ingest_event(paid(), event_id="twice") for _ in range(4)))
    assert sorted(results) == [False, False, False, True]
    assert await count_rows(database, RawEvent) == 1
    assert await load_lines(database) == [(1, 7, 2, 1500), (2, 8, 1, 999)]
