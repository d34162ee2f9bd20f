"""The checkout saga's stock steps: order events in, stock numbers and replies out.

Each event is handled the way the consumer handles it (inbox row and effect in
one transaction, meshmart_common.messaging.consumer.handle_once) against the
real database, on SQLite and MariaDB.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from itertools import count
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select

from meshmart_common.db import Database
from meshmart_common.events import OrderLine, StockChanged
from meshmart_common.messaging.consumer import (
    AlreadyHandled,
    EventDispatcher,
    PermanentEventError,
    handle_once,
)
from meshmart_common.messaging.outbox import EventPublisher
from product_service.domain.categories import CategoryService, NewCategory
from product_service.domain.products import NewProduct, ProductService
from product_service.domain.stock import StockService
from product_service.events.handlers import ORDER_EVENTS_GROUP, order_event_handlers
from product_service.events.publishing import new_publisher
from product_service.repository.models import InboxEvent, StockReservation
from services.product.tests.support import (
    deliver,
    incoming,
    order_cancelled,
    order_created,
    order_paid,
    order_rejected,
    outbox,
    purchases,
    reservations,
    stock,
)

MakeProduct = Callable[..., Awaitable[int]]
TokenMaker = Callable[..., str]

SAGA_REPLIES = ("stock.reserved", "stock.rejected")


@pytest.fixture
def publisher() -> EventPublisher:
    """The product outbox publisher the handlers reply through."""
    return new_publisher()


@pytest.fixture
def handlers(publisher: EventPublisher) -> EventDispatcher:
    """The product-order-events dispatcher."""
    return order_event_handlers(publisher)


@pytest.fixture
def make_product(database: Database, publisher: EventPublisher) -> MakeProduct:
    """``await make_product(on_hand=5, deleted=False)`` -> the id of a new product."""
    numbers = count(1)
    category_id: list[int] = []

    async def make(*, on_hand: int = 10, deleted: bool = False) -> int:
        n = next(numbers)
        async with database.session() as session:
            if not category_id:
                category = await CategoryService(session).create(
                    NewCategory(slug="saga", name="Saga")
                )
                category_id.append(category.id)
            products = ProductService(session, publisher)
            product = await products.create(
                NewProduct(
                    sku=f"SAGA-{n:04d}",
                    title=f"Saga product {n}",
                    price_cents=1000,
                    category_id=category_id[0],
                    stock=on_hand,
                )
            )
            if deleted:
                await products.delete(product.id)
            return product.id

    return make


async def replies(database: Database) -> list[tuple[str, str, dict[str, Any]]]:
    """The saga replies in the outbox: (type, subject, data)."""
    return [
        (row.event_type, row.event.subject or "", row.data)
        for row in await outbox(database, *SAGA_REPLIES)
    ]


async def stock_changes(database: Database) -> list[StockChanged]:
    """The stock.changed events in the outbox, in order."""
    return [StockChanged.from_event(row.event) for row in await outbox(database, "stock.changed")]


# --- reserve ---------------------------------------------------------------------------


async def test_order_created_reserves_every_line_and_replies_stock_reserved(
    database: Database, handlers: EventDispatcher, make_product: MakeProduct
) -> None:
    mug = await make_product(on_hand=10)
    lamp = await make_product(on_hand=3)

    # Two lines of the mug are added up into one reservation.
    await deliver(database, handlers, order_created(501, (mug, 2), (lamp, 3), (mug, 1)))

    assert await stock(database, mug) == (10, 3)
    assert await stock(database, lamp) == (3, 3)
    assert await reservations(database, 501) == {mug: (3, "reserved"), lamp: (3, "reserved")}
    assert await replies(database) == [("stock.reserved", "501", {"order_id": 501})]
    changes = await stock_changes(database)
    assert [(c.product_id, c.on_hand, c.reserved, c.reason) for c in changes] == [
        (mug, 10, 3, "reserved"),
        (lamp, 3, 3, "reserved"),
    ]
    reply = (await outbox(database, "stock.reserved"))[0]
    assert (reply.topic, reply.message_key) == ("product-events", "501")
    assert reply.event.source == "/meshmart/product"


async def test_a_line_short_of_stock_rejects_the_whole_order_and_holds_nothing(
    database: Database, handlers: EventDispatcher, make_product: MakeProduct
) -> None:
    plenty = await make_product(on_hand=10)
    scarce = await make_product(on_hand=1)
    also_plenty = await make_product(on_hand=10)

    # The first line succeeds before the second fails: the savepoint takes it back.
    await deliver(
        database, handlers, order_created(502, (plenty, 4), (scarce, 2), (also_plenty, 1))
    )

    assert await stock(database, plenty) == (10, 0)
    assert await stock(database, scarce) == (1, 0)
    assert await stock(database, also_plenty) == (10, 0)
    assert await reservations(database, 502) == {}
    assert await replies(database) == [
        (
            "stock.rejected",
            "502",
            {"order_id": 502, "reason": "insufficient_stock", "product_ids": [scarce]},
        )
    ]
    assert await stock_changes(database) == []


async def test_deleted_and_unknown_products_cannot_be_reserved(
    database: Database, handlers: EventDispatcher, make_product: MakeProduct
) -> None:
    live = await make_product(on_hand=10)
    deleted = await make_product(on_hand=10, deleted=True)
    unknown = live + deleted + 1000

    await deliver(database, handlers, order_created(503, (live, 1), (deleted, 1), (unknown, 1)))

    assert await stock(database, live) == (10, 0)
    assert await stock(database, deleted) == (10, 0)
    assert await reservations(database, 503) == {}
    assert await replies(database) == [
        (
            "stock.rejected",
            "503",
            {
                "order_id": 503,
                "reason": "product_unavailable",
                "product_ids": sorted([deleted, unknown]),
            },
        )
    ]


async def test_exactly_the_available_units_can_be_reserved(
    database: Database, handlers: EventDispatcher, make_product: MakeProduct
) -> None:
    product = await make_product(on_hand=5)
    await deliver(database, handlers, order_created(504, (product, 3)))

    await deliver(database, handlers, order_created(505, (product, 3)))  # 2 left
    await deliver(database, handlers, order_created(506, (product, 2)))

    assert await stock(database, product) == (5, 5)
    assert [(kind, subject) for kind, subject, _ in await replies(database)] == [
        ("stock.reserved", "504"),
        ("stock.rejected", "505"),
        ("stock.reserved", "506"),
    ]


async def test_an_order_without_lines_is_rejected(
    database: Database, handlers: EventDispatcher
) -> None:
    await deliver(database, handlers, order_created(507))

    assert await replies(database) == [
        ("stock.rejected", "507", {"order_id": 507, "reason": "empty_order", "product_ids": []})
    ]


async def test_an_absurd_quantity_is_rejected_not_failed(
    database: Database, handlers: EventDispatcher, make_product: MakeProduct
) -> None:
    product = await make_product(on_hand=5)
    huge = order_created(508).model_copy(
        update={"lines": [OrderLine(product_id=product, quantity=10**30, unit_price_cents=1)]}
    )

    await deliver(database, handlers, huge)

    assert await stock(database, product) == (5, 0)
    assert [(kind, data["reason"]) for kind, _, data in await replies(database)] == [
        ("stock.rejected", "insufficient_stock")
    ]


async def test_an_order_id_out_of_range_is_a_permanent_error(
    database: Database, handlers: EventDispatcher, make_product: MakeProduct
) -> None:
    product = await make_product(on_hand=5)

    with pytest.raises(PermanentEventError, match="out of range"):
        await deliver(database, handlers, order_created(2**63, (product, 1)))

    assert await stock(database, product) == (5, 0)
    assert await replies(database) == []


async def test_a_reservation_rolls_back_with_the_transaction_around_it(
    database: Database, publisher: EventPublisher, make_product: MakeProduct
) -> None:
    product = await make_product(on_hand=5)

    # Called on a fresh session (no inbox row written first): the savepoint
    # must not commit anything on its own, on SQLite either.
    async def reserve_then_fail() -> dict[int, int]:
        async with database.session() as session:
            outcome = await StockService(session, publisher).reserve_order(
                order_created(509, (product, 2))
            )
            raise RuntimeError(f"failed after reserving {outcome.reserved}")

    with pytest.raises(RuntimeError, match=rf"failed after reserving \{{{product}: 2\}}"):
        await reserve_then_fail()

    assert await stock(database, product) == (5, 0)
    assert await reservations(database, 509) == {}
    assert await replies(database) == []


# --- idempotency -----------------------------------------------------------------------


async def test_a_redelivered_order_created_changes_nothing(
    database: Database, handlers: EventDispatcher, make_product: MakeProduct
) -> None:
    product = await make_product(on_hand=10)
    created = order_created(510, (product, 2))
    first = await deliver(database, handlers, created)

    # The same event again: the inbox refuses it before the handler runs.
    with pytest.raises(AlreadyHandled):
        await deliver(database, handlers, created, event_id=first.id)
    # The same order in a new event (a replayed publish): reservations exist,
    # so nothing is reserved or sent again.
    await deliver(database, handlers, created)

    assert await stock(database, product) == (10, 2)
    assert await reservations(database, 510) == {product: (2, "reserved")}
    assert [kind for kind, _, _ in await replies(database)] == ["stock.reserved"]
    assert len(await stock_changes(database)) == 1
    async with database.session(read_only=True) as session:
        handled = await session.scalar(
            select(func.count(InboxEvent.id)).where(InboxEvent.consumer_group == ORDER_EVENTS_GROUP)
        )
    assert handled == 2


async def test_a_released_order_is_not_reserved_again_by_a_late_order_created(
    database: Database, handlers: EventDispatcher, make_product: MakeProduct
) -> None:
    product = await make_product(on_hand=10)
    await deliver(database, handlers, order_created(511, (product, 2)))
    await deliver(database, handlers, order_cancelled(511))

    await deliver(database, handlers, order_created(511, (product, 2)))

    assert await stock(database, product) == (10, 0)
    assert await reservations(database, 511) == {product: (2, "released")}


# --- release ---------------------------------------------------------------------------


@pytest.mark.parametrize("ending", ["rejected", "cancelled"])
async def test_a_rejected_or_cancelled_order_releases_its_stock(
    database: Database, handlers: EventDispatcher, make_product: MakeProduct, ending: str
) -> None:
    first = await make_product(on_hand=10)
    second = await make_product(on_hand=4)
    await deliver(database, handlers, order_created(520, (first, 3), (second, 4)))
    await deliver(database, handlers, order_created(521, (first, 1)))  # another order

    end = order_rejected(520) if ending == "rejected" else order_cancelled(520)
    await deliver(database, handlers, end)

    assert await stock(database, first) == (10, 1)
    assert await stock(database, second) == (4, 0)
    assert await reservations(database, 520) == {
        first: (3, "released"),
        second: (4, "released"),
    }
    assert await reservations(database, 521) == {first: (1, "reserved")}
    released = [c for c in await stock_changes(database) if c.reason == "released"]
    assert [(c.product_id, c.on_hand, c.reserved) for c in released] == [
        (first, 10, 1),
        (second, 4, 0),
    ]

    # A second ending (cancel after reject, a replay) finds nothing to release.
    await deliver(database, handlers, order_cancelled(520))
    assert await stock(database, first) == (10, 1)
    assert await stock(database, second) == (4, 0)
    assert len([c for c in await stock_changes(database) if c.reason == "released"]) == 2


async def test_releasing_an_order_that_holds_nothing_is_a_no_op(
    database: Database, handlers: EventDispatcher, make_product: MakeProduct
) -> None:
    product = await make_product(on_hand=1)
    await deliver(database, handlers, order_created(530, (product, 5)))  # rejected

    await deliver(database, handlers, order_rejected(530))
    await deliver(database, handlers, order_cancelled(531))  # never seen

    assert await stock(database, product) == (1, 0)
    assert await stock_changes(database) == []


# --- commit ----------------------------------------------------------------------------


async def test_a_paid_order_commits_its_stock_and_records_the_purchase(
    database: Database, handlers: EventDispatcher, make_product: MakeProduct
) -> None:
    mug = await make_product(on_hand=10)
    lamp = await make_product(on_hand=2)
    await deliver(database, handlers, order_created(540, (mug, 3), (lamp, 2), user_id=42))

    await deliver(database, handlers, order_paid(540, (mug, 3), (lamp, 2), user_id=42))

    assert await stock(database, mug) == (7, 0)
    assert await stock(database, lamp) == (0, 0)
    assert await reservations(database, 540) == {mug: (3, "committed"), lamp: (2, "committed")}
    assert await purchases(database) == {(42, mug, 540), (42, lamp, 540)}
    committed = [c for c in await stock_changes(database) if c.reason == "committed"]
    assert [(c.product_id, c.on_hand, c.reserved) for c in committed] == [
        (mug, 7, 0),
        (lamp, 0, 0),
    ]

    # A replayed order.paid and a late cancel change nothing more.
    await deliver(database, handlers, order_paid(540, (mug, 3), (lamp, 2), user_id=42))
    await deliver(database, handlers, order_cancelled(540, user_id=42))
    assert await stock(database, mug) == (7, 0)
    assert await stock(database, lamp) == (0, 0)
    assert await purchases(database) == {(42, mug, 540), (42, lamp, 540)}
    assert len(await stock_changes(database)) == 4


async def test_buying_a_product_again_keeps_one_purchase(
    database: Database, handlers: EventDispatcher, make_product: MakeProduct
) -> None:
    product = await make_product(on_hand=10)
    for order_id in (550, 551):
        await deliver(database, handlers, order_created(order_id, (product, 1), user_id=9))
        await deliver(database, handlers, order_paid(order_id, (product, 1), user_id=9))

    assert await stock(database, product) == (8, 0)
    assert await purchases(database) == {(9, product, 550)}


async def test_reviews_of_bought_products_are_verified(
    client: AsyncClient,
    database: Database,
    handlers: EventDispatcher,
    make_product: MakeProduct,
    make_token: TokenMaker,
) -> None:
    bought_later = await make_product(on_hand=10)
    bought_first = await make_product(on_hand=10)
    never_bought = await make_product(on_hand=10)
    buyer = {"Authorization": f"Bearer {make_token(77, email='buyer@example.com')}"}
    other = {"Authorization": f"Bearer {make_token(78, email='other@example.com')}"}

    async def review(product_id: int, headers: dict[str, str]) -> dict[str, Any]:
        response = await client.post(
            f"/api/v1/products/{product_id}/reviews", json={"rating": 5}, headers=headers
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    early = await review(bought_later, buyer)
    by_other = await review(bought_later, other)
    assert (early["verified"], by_other["verified"]) == (False, False)

    await deliver(
        database, handlers, order_created(560, (bought_later, 1), (bought_first, 1), user_id=77)
    )
    await deliver(
        database, handlers, order_paid(560, (bought_later, 1), (bought_first, 1), user_id=77)
    )

    listed = (await client.get(f"/api/v1/products/{bought_later}/reviews")).json()["items"]
    assert {r["user_id"]: r["verified"] for r in listed} == {77: True, 78: False}
    assert (await review(bought_first, buyer))["verified"] is True
    assert (await review(never_bought, buyer))["verified"] is False


# --- concurrency -----------------------------------------------------------------------


async def test_concurrent_checkouts_of_the_last_units_never_oversell(
    database: Database, handlers: EventDispatcher, make_product: MakeProduct
) -> None:
    product = await make_product(on_hand=5)
    orders = list(range(600, 612))

    # Each order is its own consumer transaction, all in flight at once.
    results = await asyncio.gather(
        *(
            handle_once(
                database, InboxEvent, handlers, incoming(order_created(order_id, (product, 1)))
            )
            for order_id in orders
        ),
        return_exceptions=True,
    )

    assert [r for r in results if r is not None] == []
    assert await stock(database, product) == (5, 5)
    outcomes = await replies(database)
    reserved = sorted(int(subject) for kind, subject, _ in outcomes if kind == "stock.reserved")
    rejected = sorted(int(subject) for kind, subject, _ in outcomes if kind == "stock.rejected")
    assert len(reserved) == 5
    assert sorted(reserved + rejected) == orders
    async with database.session(read_only=True) as session:
        held = await session.scalar(
            select(func.sum(StockReservation.quantity)).where(
                StockReservation.product_id == product, StockReservation.state == "reserved"
            )
        )
    assert held == 5


async def test_concurrent_multi_line_orders_reserve_all_or_nothing(
    database: Database, handlers: EventDispatcher, make_product: MakeProduct
) -> None:
    first = await make_product(on_hand=5)
    second = await make_product(on_hand=5)
    # Every order wants 2 of one and 1 of the other, in both line orders.
    payloads = [
        order_created(700 + n, (first, 2), (second, 1))
        if n % 2
        else order_created(700 + n, (second, 2), (first, 1))
        for n in range(10)
    ]

    results = await asyncio.gather(
        *(handle_once(database, InboxEvent, handlers, incoming(p)) for p in payloads),
        return_exceptions=True,
    )

    assert [r for r in results if r is not None] == []
    first_on_hand, first_reserved = await stock(database, first)
    second_on_hand, second_reserved = await stock(database, second)
    async with database.session(read_only=True) as session:
        rows = list(await session.scalars(select(StockReservation)))
    held_first = sum(r.quantity for r in rows if r.product_id == first)
    held_second = sum(r.quantity for r in rows if r.product_id == second)
    assert (first_on_hand, second_on_hand) == (5, 5)
    assert (first_reserved, second_reserved) == (held_first, held_second)
    assert first_reserved <= 5
    assert second_reserved <= 5
    reserved_orders = {r.order_id for r in rows}
    # All or nothing: every reserved order holds both of its lines.
    assert all(
        {r.product_id for r in rows if r.order_id == order_id} == {first, second}
        for order_id in reserved_orders
    )
    assert first_reserved + second_reserved == 3 * len(reserved_orders)
    # 10 units in all, 3 per order: at most 3 orders fit, and at least 2 always do.
    assert 2 <= len(reserved_orders) <= 3
