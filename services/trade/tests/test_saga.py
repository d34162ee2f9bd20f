"""Trade's part of the checkout saga: lock at order.created, consume when paid, release else.

The operations run on their own sessions, as the order-events consumer will
run them; the API shows their effects.
"""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import select

from meshmart_common.db import Database
from meshmart_common.events import (
    EventData,
    OrderCancelled,
    OrderCreated,
    OrderLine,
    OrderPaid,
    OrderRejected,
    PointsChanged,
    StockReserved,
    TradeLocked,
    TradeRejected,
)
from trade_service.domain.points import BALANCE_REASONS, HOLD_REASONS
from trade_service.domain.saga import (
    VOID_REASON,
    consume_for_order,
    lock_for_order,
    release_for_order,
)
from trade_service.events.handlers import HANDLERS, SUBSCRIPTION
from trade_service.repository.models import (
    Coupon,
    PointsAccount,
    PointsEntry,
    PointsReason,
    TradeHold,
)

Factory = Callable[..., Awaitable[dict[str, Any]]]
USER = 1001
LATER = datetime.now(UTC) + timedelta(days=365)
"""A moment after every campaign the default factory opens has ended."""


def created(
    order_id: int,
    *,
    subtotal: int = 5000,
    discount: int = 0,
    points: int = 0,
    code: str | None = None,
    user_id: int = USER,
) -> OrderCreated:
    return OrderCreated(
        order_id=order_id,
        user_id=user_id,
        lines=[OrderLine(product_id=1, quantity=1, unit_price_cents=subtotal)],
        subtotal_cents=subtotal,
        discount_cents=discount,
        points_to_redeem=points,
        total_cents=subtotal - discount - points,
        coupon_code=code,
        created_at=datetime.now(UTC),
    )


def paid(
    order_id: int, *, total: int, points: int = 0, discount: int = 0, user_id: int = USER
) -> OrderPaid:
    return OrderPaid(
        order_id=order_id,
        user_id=user_id,
        lines=[OrderLine(product_id=1, quantity=1, unit_price_cents=total)],
        total_cents=total,
        discount_cents=discount,
        points_redeemed=points,
        paid_at=datetime.now(UTC),
    )


def rejected(order_id: int, user_id: int = USER) -> OrderRejected:
    return OrderRejected(order_id=order_id, user_id=user_id, reason="stock.rejected")


def cancelled(order_id: int, user_id: int = USER) -> OrderCancelled:
    return OrderCancelled(
        order_id=order_id, user_id=user_id, reason="customer", cancelled_at=datetime.now(UTC)
    )


async def lock(
    database: Database, event: OrderCreated, now: datetime | None = None
) -> TradeLocked | TradeRejected:
    async with database.session() as session:
        return await lock_for_order(session, event, now=now)


async def consume(database: Database, event: OrderPaid) -> list[PointsChanged]:
    async with database.session() as session:
        return await consume_for_order(session, event)


async def release(
    database: Database, event: OrderRejected | OrderCancelled, now: datetime | None = None
) -> list[PointsChanged]:
    async with database.session() as session:
        return await release_for_order(session, event, now=now)


async def points_of(client: AsyncClient, headers: dict[str, str]) -> tuple[int, int, int]:
    points = (await client.get("/api/v1/points", headers=headers)).json()
    return points["balance"], points["locked"], points["available"]


async def history(client: AsyncClient, headers: dict[str, str]) -> list[tuple[str, int, Any]]:
    """The caller's history, oldest first, as (reason, delta, order_id)."""
    page = (await client.get("/api/v1/points", params={"page_size": 100}, headers=headers)).json()
    return [(e["reason"], e["delta"], e["order_id"]) for e in reversed(page["history"]["items"])]


async def coupon_state(database: Database, coupon_id: int) -> tuple[str, int | None]:
    async with database.session(read_only=True) as session:
        coupon = await session.get(Coupon, coupon_id)
        assert coupon is not None
        return coupon.status, coupon.order_id


async def campaign_counters(
    client: AsyncClient, admin_headers: dict[str, str], campaign_id: int
) -> tuple[int, int]:
    campaign = (
        await client.get(f"/api/v1/coupon-campaigns/{campaign_id}", headers=admin_headers)
    ).json()
    return campaign["claimed_count"], campaign["used_count"]


async def assert_ledger_consistent(database: Database, user_id: int = USER) -> None:
    """The counters are what the history adds up to (see domain/points.py)."""
    async with database.session(read_only=True) as session:
        account = await session.get(PointsAccount, user_id)
        entries = (
            await session.scalars(select(PointsEntry).where(PointsEntry.user_id == user_id))
        ).all()
    assert account is not None
    balance = sum(e.delta for e in entries if e.reason in BALANCE_REASONS)
    locked = -sum(e.delta for e in entries if e.reason in HOLD_REASONS)
    assert (account.balance, account.locked) == (balance, locked)
    assert account.balance - account.locked == sum(e.delta for e in entries)
    assert 0 <= account.locked <= account.balance


@pytest.fixture
async def shopper(
    create_campaign: Factory, claim_coupon: Factory, grant_points: Factory
) -> dict[str, Any]:
    """Customer 1001 with 500 points and a WELCOME10 coupon (10% off from 20.00)."""
    campaign = await create_campaign(code="WELCOME10", discount_value=10, min_spend_cents=2000)
    coupon = await claim_coupon("WELCOME10")
    await grant_points(500)
    return {"campaign": campaign, "coupon": coupon}


# --- lock -------------------------------------------------------------------------


async def test_lock_holds_the_coupon_and_the_points(
    client: AsyncClient,
    customer_headers: dict[str, str],
    database: Database,
    shopper: dict[str, Any],
) -> None:
    reply = await lock(database, created(1, discount=500, points=300, code="WELCOME10"))

    assert reply == TradeLocked(
        order_id=1, coupon_code="WELCOME10", discount_cents=500, points_locked=300
    )
    assert await points_of(client, customer_headers) == (500, 300, 200)
    assert await coupon_state(database, shopper["coupon"]["id"]) == ("locked", 1)
    assert await history(client, customer_headers) == [
        ("adjusted", 500, None),
        ("locked", -300, 1),
    ]
    coupons = (await client.get("/api/v1/coupons", headers=customer_headers)).json()
    assert [c["status"] for c in coupons] == ["locked"]
    quote = await client.post(
        "/api/v1/quotes",
        json={"subtotal_cents": 5000, "coupon_code": "WELCOME10", "points_to_redeem": 201},
        headers=customer_headers,
    )
    assert quote.status_code == 422
    assert {e["field"] for e in quote.json()["errors"]} == {"coupon_code", "points_to_redeem"}
    await assert_ledger_consistent(database)


async def test_lock_delivered_twice_locks_once_and_answers_the_same(
    client: AsyncClient,
    customer_headers: dict[str, str],
    database: Database,
    shopper: dict[str, Any],
) -> None:
    event = created(1, discount=500, points=300, code="WELCOME10")

    first = await lock(database, event)
    second = await lock(database, event)

    assert (
        first
        == second
        == TradeLocked(order_id=1, coupon_code="WELCOME10", discount_cents=500, points_locked=300)
    )
    assert await points_of(client, customer_headers) == (500, 300, 200)
    assert [r for r, _, _ in await history(client, customer_headers)] == ["adjusted", "locked"]


async def test_order_without_coupon_or_points_locks_nothing(
    client: AsyncClient, customer_headers: dict[str, str], database: Database
) -> None:
    reply = await lock(database, created(5))
    assert reply == TradeLocked(order_id=5, coupon_code=None, discount_cents=0, points_locked=0)
    assert await points_of(client, customer_headers) == (0, 0, 0)
    assert await history(client, customer_headers) == []


@pytest.mark.parametrize(
    ("event", "now", "reason"),
    [
        (created(1, code="NOT-MINE", discount=500), None, "no available coupon NOT-MINE"),
        (created(1, code="WELCOME10", discount=500, points=300), LATER, "has expired"),
        (created(1, subtotal=1999, code="WELCOME10", discount=199), None, "at least 2000"),
        (created(1, code="WELCOME10", discount=400), None, "should be 500 cents"),
        (created(1, code="WELCOME10", discount=500, points=501), None, "only 500 points"),
        (created(1, subtotal=300, points=301), None, "at most 300 points"),
        (created(1, code="WELCOME10", points=10), None, "should be 500 cents"),
    ],
    ids=[
        "coupon-not-held",
        "campaign-ended",
        "below-minimum-spend",
        "discount-mismatch",
        "insufficient-points",
        "points-above-subtotal",
        "discount-missing",
    ],
)
async def test_lock_rejects_and_holds_nothing(
    client: AsyncClient,
    customer_headers: dict[str, str],
    database: Database,
    shopper: dict[str, Any],
    event: OrderCreated,
    now: datetime | None,
    reason: str,
) -> None:
    reply = await lock(database, event, now=now)

    assert isinstance(reply, TradeRejected)
    assert reply.order_id == 1
    assert reason in reply.reason
    assert await points_of(client, customer_headers) == (500, 0, 500)
    assert await coupon_state(database, shopper["coupon"]["id"]) == ("available", None)
    assert await history(client, customer_headers) == [("adjusted", 500, None)]


async def test_rejection_is_remembered_for_a_redelivery(
    client: AsyncClient,
    customer_headers: dict[str, str],
    database: Database,
    shopper: dict[str, Any],
    grant_points: Factory,
) -> None:
    event = created(1, discount=500, points=800, code="WELCOME10")
    first = await lock(database, event)
    await grant_points(1000)  # would now be enough, but the order was already answered

    second = await lock(database, event)

    assert isinstance(first, TradeRejected)
    assert first == second
    assert await points_of(client, customer_headers) == (1500, 0, 1500)


async def test_lock_matches_the_coupon_code_in_any_case(
    database: Database, shopper: dict[str, Any]
) -> None:
    reply = await lock(database, created(1, discount=500, code=" welcome10"))
    assert reply == TradeLocked(
        order_id=1, coupon_code="WELCOME10", discount_cents=500, points_locked=0
    )
    assert await coupon_state(database, shopper["coupon"]["id"]) == ("locked", 1)


async def test_empty_coupon_code_means_no_coupon(
    database: Database, shopper: dict[str, Any]
) -> None:
    reply = await lock(database, created(1, code=""))
    assert reply == TradeLocked(order_id=1, coupon_code=None, discount_cents=0, points_locked=0)
    assert await coupon_state(database, shopper["coupon"]["id"]) == ("available", None)


async def test_coupon_of_another_customer_cannot_be_locked(
    client: AsyncClient,
    make_token: Callable[..., str],
    database: Database,
    shopper: dict[str, Any],
) -> None:
    reply = await lock(database, created(1, discount=500, code="WELCOME10", user_id=77))
    assert isinstance(reply, TradeRejected)
    assert await coupon_state(database, shopper["coupon"]["id"]) == ("available", None)


async def test_concurrent_orders_cannot_lock_the_same_points_twice(
    client: AsyncClient, customer_headers: dict[str, str], database: Database, grant_points: Factory
) -> None:
    await grant_points(500)

    replies = await asyncio.gather(
        lock(database, created(1, points=400)), lock(database, created(2, points=400))
    )

    assert sorted(type(r).__name__ for r in replies) == ["TradeLocked", "TradeRejected"]
    assert await points_of(client, customer_headers) == (500, 400, 100)
    await assert_ledger_consistent(database)


async def test_concurrent_orders_cannot_lock_the_same_coupon(
    database: Database, shopper: dict[str, Any]
) -> None:
    replies = await asyncio.gather(
        lock(database, created(1, discount=500, code="WELCOME10")),
        lock(database, created(2, discount=500, code="WELCOME10")),
    )

    locked = [r for r in replies if isinstance(r, TradeLocked)]
    assert len(locked) == 1
    assert sum(isinstance(r, TradeRejected) for r in replies) == 1
    assert await coupon_state(database, shopper["coupon"]["id"]) == ("locked", locked[0].order_id)


async def test_concurrent_redeliveries_of_one_order_lock_once(
    client: AsyncClient,
    customer_headers: dict[str, str],
    database: Database,
    shopper: dict[str, Any],
) -> None:
    event = created(1, discount=500, points=300, code="WELCOME10")

    replies = await asyncio.gather(*(lock(database, event) for _ in range(3)))

    assert all(r == replies[0] for r in replies)
    assert isinstance(replies[0], TradeLocked)
    assert await points_of(client, customer_headers) == (500, 300, 200)
    await assert_ledger_consistent(database)


# --- consume ----------------------------------------------------------------------


async def test_payment_spends_the_coupon_and_points_and_awards_points(
    client: AsyncClient,
    customer_headers: dict[str, str],
    admin_headers: dict[str, str],
    database: Database,
    shopper: dict[str, Any],
) -> None:
    await lock(database, created(1, discount=500, points=300, code="WELCOME10"))

    changes = await consume(database, paid(1, total=4299, points=300, discount=500))

    assert changes == [
        PointsChanged(user_id=USER, delta=-300, balance=200, reason="redeemed", order_id=1),
        PointsChanged(user_id=USER, delta=42, balance=242, reason="earned", order_id=1),
    ]
    assert await points_of(client, customer_headers) == (242, 0, 242)
    assert await coupon_state(database, shopper["coupon"]["id"]) == ("used", 1)
    assert await campaign_counters(client, admin_headers, shopper["campaign"]["id"]) == (1, 1)
    assert await history(client, customer_headers) == [
        ("adjusted", 500, None),
        ("locked", -300, 1),
        ("released", 300, 1),
        ("redeemed", -300, 1),
        ("earned", 42, 1),
    ]
    coupons = (await client.get("/api/v1/coupons", headers=customer_headers)).json()
    assert [c["status"] for c in coupons] == ["used"]
    await assert_ledger_consistent(database)


async def test_payment_delivered_twice_has_one_effect(
    client: AsyncClient,
    customer_headers: dict[str, str],
    admin_headers: dict[str, str],
    database: Database,
    shopper: dict[str, Any],
) -> None:
    await lock(database, created(1, discount=500, points=300, code="WELCOME10"))
    event = paid(1, total=4200, points=300, discount=500)
    await consume(database, event)

    again = await consume(database, event)
    together = await asyncio.gather(consume(database, event), consume(database, event))

    assert again == []
    assert list(together) == [[], []]
    assert await points_of(client, customer_headers) == (242, 0, 242)
    assert await campaign_counters(client, admin_headers, shopper["campaign"]["id"]) == (1, 1)
    assert len(await history(client, customer_headers)) == 5


async def test_points_are_earned_per_whole_currency_unit(
    client: AsyncClient, customer_headers: dict[str, str], database: Database
) -> None:
    for order_id, total in [(1, 99), (2, 100), (3, 12345)]:
        await lock(database, created(order_id, subtotal=total))
        await consume(database, paid(order_id, total=total))
    assert await history(client, customer_headers) == [("earned", 1, 2), ("earned", 123, 3)]
    assert await points_of(client, customer_headers) == (124, 0, 124)


async def test_payment_without_a_lock_still_awards_points_once(
    client: AsyncClient, customer_headers: dict[str, str], database: Database
) -> None:
    first = await consume(database, paid(9, total=1000))
    second = await consume(database, paid(9, total=1000))
    assert [c.delta for c in first] == [10]
    assert second == []
    assert await points_of(client, customer_headers) == (10, 0, 10)


# --- release ----------------------------------------------------------------------


async def test_rejected_order_releases_the_coupon_and_points(
    client: AsyncClient,
    customer_headers: dict[str, str],
    database: Database,
    shopper: dict[str, Any],
) -> None:
    await lock(database, created(1, discount=500, points=300, code="WELCOME10"))

    changes = await release(database, rejected(1))

    assert changes == []
    assert await points_of(client, customer_headers) == (500, 0, 500)
    assert await coupon_state(database, shopper["coupon"]["id"]) == ("available", None)
    assert (await history(client, customer_headers))[-1] == ("released", 300, 1)
    # Both can be used again by the next order.
    assert isinstance(
        await lock(database, created(2, discount=500, points=500, code="WELCOME10")), TradeLocked
    )
    await assert_ledger_consistent(database)


async def test_cancelled_order_refunds_the_points(
    client: AsyncClient,
    customer_headers: dict[str, str],
    database: Database,
    shopper: dict[str, Any],
) -> None:
    await lock(database, created(1, discount=500, points=300, code="WELCOME10"))

    await release(database, cancelled(1))
    await release(database, cancelled(1))

    assert await points_of(client, customer_headers) == (500, 0, 500)
    assert await history(client, customer_headers) == [
        ("adjusted", 500, None),
        ("locked", -300, 1),
        ("refunded", 300, 1),
    ]
    assert await coupon_state(database, shopper["coupon"]["id"]) == ("available", None)
    await assert_ledger_consistent(database)


async def test_coupon_released_after_its_campaign_ended_expires(
    client: AsyncClient,
    customer_headers: dict[str, str],
    database: Database,
    shopper: dict[str, Any],
) -> None:
    await lock(database, created(1, discount=500, code="WELCOME10"))
    await release(database, cancelled(1), now=LATER)
    assert await coupon_state(database, shopper["coupon"]["id"]) == ("expired", None)
    coupons = (await client.get("/api/v1/coupons", headers=customer_headers)).json()
    assert [c["status"] for c in coupons] == ["expired"]


async def test_release_of_an_order_never_locked_changes_nothing_and_blocks_a_late_lock(
    client: AsyncClient,
    customer_headers: dict[str, str],
    database: Database,
    shopper: dict[str, Any],
) -> None:
    assert await release(database, rejected(1)) == []

    late = await lock(database, created(1, discount=500, points=300, code="WELCOME10"))

    assert late == TradeRejected(order_id=1, reason=VOID_REASON)
    assert await points_of(client, customer_headers) == (500, 0, 500)
    assert await coupon_state(database, shopper["coupon"]["id"]) == ("available", None)


async def test_release_after_payment_or_rejection_changes_nothing(
    client: AsyncClient, customer_headers: dict[str, str], database: Database, grant_points: Factory
) -> None:
    await grant_points(500)
    await lock(database, created(1, points=200))
    await consume(database, paid(1, total=4800, points=200))
    await lock(database, created(2, points=900))  # rejected: too few points

    assert await release(database, cancelled(1)) == []
    assert await release(database, rejected(2)) == []
    assert await consume(database, paid(2, total=100)) == []

    assert await points_of(client, customer_headers) == (348, 0, 348)
    async with database.session(read_only=True) as session:
        holds = {h.order_id: h.status for h in (await session.scalars(select(TradeHold))).all()}
    assert holds == {1: "consumed", 2: "rejected"}
    await assert_ledger_consistent(database)


# --- the ledger over a whole story -------------------------------------------------------


async def test_balance_and_history_agree_after_a_mixed_story(
    client: AsyncClient,
    customer_headers: dict[str, str],
    database: Database,
    shopper: dict[str, Any],
    grant_points: Factory,
) -> None:
    await grant_points(1000)
    await lock(database, created(1, discount=500, points=400, code="WELCOME10"))
    await lock(database, created(2, points=600))
    await lock(database, created(3, points=600))  # rejected: 500 left
    await consume(database, paid(1, total=4100, points=400, discount=500))
    await release(database, cancelled(2))
    await lock(database, created(4, subtotal=9000, points=1000))
    await consume(database, paid(4, total=8000, points=1000))

    # 1500 - 400 + 41 - 1000 + 80 = 221
    assert await points_of(client, customer_headers) == (221, 0, 221)
    reasons = [r for r, _, _ in await history(client, customer_headers)]
    assert reasons.count(PointsReason.EARNED) == 2
    assert reasons.count(PointsReason.REFUNDED) == 1
    await assert_ledger_consistent(database)


# --- handlers ---------------------------------------------------------------------


async def test_handlers_route_order_events_to_the_saga(
    database: Database, shopper: dict[str, Any]
) -> None:
    topic, tags = SUBSCRIPTION
    assert topic == "order-events"
    assert set(tags) == {"order.created", "order.paid", "order.rejected", "order.cancelled"}
    assert set(HANDLERS) == set(tags)
    replies: list[EventData] = []
    for event in [
        created(1, discount=500, points=100, code="WELCOME10"),
        paid(1, total=4400, points=100, discount=500),
        created(2, points=50),
        rejected(2),
    ]:
        async with database.session() as session:
            replies += await HANDLERS[event.event_type](session, event)

    assert [type(r).__name__ for r in replies] == [
        "TradeLocked",
        "PointsChanged",
        "PointsChanged",
        "TradeLocked",
    ]
    assert [r.aggregate_key() for r in replies] == ["1", str(USER), str(USER), "2"]


async def test_handler_refuses_a_payload_of_another_type(database: Database) -> None:
    async with database.session() as session:
        with pytest.raises(TypeError, match="OrderPaid"):
            await HANDLERS["order.paid"](session, StockReserved(order_id=1))
