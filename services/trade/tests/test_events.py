"""Trade on the event backbone: what the API and the saga put in the outbox; the bus round trip.

- API calls leave their events in the outbox, in their own transaction;
- the ``trade-order-events`` dispatcher runs the saga step of each order event
  and adds its replies to the outbox in the consumer's transaction;
- with the app running, an order.created put on the local bus comes back as
  trade.locked on the bus.
"""

from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import func, select

from meshmart_common.db import Database
from meshmart_common.events import (
    EventData,
    OrderCancelled,
    OrderCreated,
    OrderLine,
    OrderPaid,
    OrderRejected,
    PointsChanged,
    TradeLocked,
)
from meshmart_common.messaging.bus import ReceivedMessage
from meshmart_common.messaging.consumer import (
    AlreadyHandled,
    IncomingEvent,
    PermanentEventError,
    handle_once,
)
from meshmart_common.messaging.envelope import CloudEvent, outgoing_message
from meshmart_common.messaging.local_bus import LocalBus
from meshmart_common.messaging.testing import eventually
from meshmart_common.messaging.topology import consumer_group
from meshmart_common.testing import TestContext, assert_problem
from trade_service.domain.saga import lock_for_order
from trade_service.events.handlers import (
    ORDER_EVENTS_GROUP,
    order_events_consumer,
    order_events_dispatcher,
)
from trade_service.events.publisher import SOURCE, new_publisher
from trade_service.repository.models import Coupon, InboxEvent, OutboxEvent, PointsAccount

Factory = Callable[..., Awaitable[dict[str, Any]]]
USER = 1001
ORDER_SOURCE = "/meshmart/order"


# --- helpers ------------------------------------------------------------------------


def created(
    order_id: int, *, subtotal: int = 5000, discount: int = 0, points: int = 0, code: str | None
) -> OrderCreated:
    return OrderCreated(
        order_id=order_id,
        user_id=USER,
        lines=[OrderLine(product_id=7, quantity=2, unit_price_cents=subtotal // 2)],
        subtotal_cents=subtotal,
        discount_cents=discount,
        points_to_redeem=points,
        total_cents=subtotal - discount - points,
        coupon_code=code,
        created_at=datetime.now(UTC),
    )


def paid(order_id: int, *, total: int, discount: int, points: int, code: str | None) -> OrderPaid:
    return OrderPaid(
        order_id=order_id,
        user_id=USER,
        lines=[OrderLine(product_id=7, quantity=1, unit_price_cents=total)],
        total_cents=total,
        discount_cents=discount,
        points_redeemed=points,
        coupon_code=code,
        paid_at=datetime.now(UTC),
    )


def incoming(payload: EventData, message_id: str = "msg-1") -> IncomingEvent:
    """``payload`` as the trade-order-events consumer receives it from order."""
    return IncomingEvent(
        envelope=payload.to_event(source=ORDER_SOURCE, subject=payload.aggregate_key()),
        consumer_group=ORDER_EVENTS_GROUP.name,
        topic=ORDER_EVENTS_GROUP.topic,
        message_id=message_id,
        key=payload.aggregate_key(),
    )


async def outbox(database: Database, *types: str) -> list[tuple[OutboxEvent, CloudEvent]]:
    """The outbox rows (of ``types``, when given) in id order, each with its parsed envelope."""
    query = select(OutboxEvent).order_by(OutboxEvent.id)
    if types:
        query = query.where(OutboxEvent.event_type.in_(types))
    async with database.session(read_only=True) as session:
        rows = (await session.scalars(query)).all()
    return [(row, CloudEvent.from_json(row.body)) for row in rows]


async def dispatch(database: Database, payload: EventData) -> None:
    """Run trade's order-events handler on ``payload`` in one transaction, as the consumer does."""
    dispatcher = order_events_dispatcher(new_publisher())
    async with database.session() as session:
        await dispatcher(session, incoming(payload))


async def points_of(database: Database, user_id: int = USER) -> tuple[int, int]:
    async with database.session(read_only=True) as session:
        account = await session.get(PointsAccount, user_id)
        assert account is not None
        return account.balance, account.locked


async def coupon_status(database: Database, coupon_id: int) -> str:
    async with database.session(read_only=True) as session:
        coupon = await session.get(Coupon, coupon_id)
        assert coupon is not None
        return coupon.status


@pytest.fixture
async def shopper(
    create_campaign: Factory, claim_coupon: Factory, grant_points: Factory
) -> dict[str, Any]:
    """Customer 1001 with 500 points and a WELCOME10 coupon (10% off from 20.00)."""
    campaign = await create_campaign(code="WELCOME10", discount_value=10, min_spend_cents=2000)
    coupon = await claim_coupon("WELCOME10")
    await grant_points(500)
    return {"campaign": campaign, "coupon": coupon}


# --- the API's events ------------------------------------------------------------------


async def test_claiming_a_coupon_leaves_coupon_claimed_in_the_outbox(
    create_campaign: Factory, claim_coupon: Factory, database: Database
) -> None:
    campaign = await create_campaign(code="SPRING-5", discount_type="fixed", discount_value=500)

    await claim_coupon("spring-5")

    # Creating the campaign left an audit entry too (test_audit.py); this is about the claim.
    [(row, event)] = await outbox(database, "coupon.claimed")
    assert (row.topic, row.event_type, row.message_key) == (
        "trade-events",
        "coupon.claimed",
        str(USER),
    )
    assert row.event_id == event.id
    assert (event.source, event.type, event.subject) == (SOURCE, "coupon.claimed", str(USER))
    assert event.data == {"user_id": USER, "campaign_id": campaign["id"], "code": "SPRING-5"}


async def test_a_refused_claim_leaves_no_event(
    client: AsyncClient,
    create_campaign: Factory,
    claim_coupon: Factory,
    customer_headers: dict[str, str],
    database: Database,
) -> None:
    await create_campaign(code="ONCE", per_user_limit=1)
    await claim_coupon("ONCE")

    again = await client.post(
        "/api/v1/coupons/claim", json={"code": "ONCE"}, headers=customer_headers
    )

    assert_problem(again, 409)
    types = [event.type for _, event in await outbox(database)]
    # The campaign's audit entry aside, only the first claim left an event.
    assert [t for t in types if t != "audit.recorded"] == ["coupon.claimed"]


async def test_granting_points_leaves_points_changed_in_the_outbox(
    grant_points: Factory, database: Database
) -> None:
    await grant_points(300, user_id=42)
    await grant_points(200, user_id=42)

    rows = await outbox(database, "points.changed")
    assert [(row.topic, row.event_type, row.message_key) for row, _ in rows] == [
        ("trade-events", "points.changed", "42"),
        ("trade-events", "points.changed", "42"),
    ]
    assert [event.data for _, event in rows] == [
        {"user_id": 42, "delta": 300, "balance": 300, "reason": "adjusted", "order_id": None},
        {"user_id": 42, "delta": 200, "balance": 500, "reason": "adjusted", "order_id": None},
    ]
    assert all(event.source == SOURCE for _, event in rows)


async def test_an_invalid_grant_leaves_no_event(
    client: AsyncClient, admin_headers: dict[str, str], database: Database
) -> None:
    response = await client.post(
        "/api/v1/points/grants", json={"user_id": 42, "points": 0}, headers=admin_headers
    )

    assert_problem(response, 422, field="points")
    assert await outbox(database) == []


# --- the order-events dispatcher -----------------------------------------------------------


def test_the_consumer_reads_order_events_with_the_topology_group() -> None:
    spec = order_events_consumer(new_publisher())

    assert spec.group == consumer_group("trade-order-events")
    assert spec.group.topic == "order-events"
    assert set(spec.group.tags) == {
        "order.created",
        "order.paid",
        "order.rejected",
        "order.cancelled",
    }
    assert order_events_dispatcher(new_publisher()).event_types == set(spec.group.tags)


async def test_order_created_publishes_trade_locked(
    database: Database, shopper: dict[str, Any]
) -> None:
    await dispatch(database, created(1, discount=500, points=300, code="WELCOME10"))

    [(row, event)] = await outbox(database, "trade.locked", "trade.rejected")
    assert (row.topic, row.event_type, row.message_key) == ("trade-events", "trade.locked", "1")
    assert (event.source, event.subject) == (SOURCE, "1")
    assert TradeLocked.from_event(event) == TradeLocked(
        order_id=1, coupon_code="WELCOME10", discount_cents=500, points_locked=300
    )
    assert await points_of(database) == (500, 300)
    assert await coupon_status(database, shopper["coupon"]["id"]) == "locked"


async def test_order_created_that_cannot_be_held_publishes_trade_rejected(
    database: Database, shopper: dict[str, Any]
) -> None:
    await dispatch(database, created(2, points=900, code=None))

    [(row, event)] = await outbox(database, "trade.locked", "trade.rejected")
    assert (row.event_type, row.message_key) == ("trade.rejected", "2")
    assert event.data == {"order_id": 2, "reason": "only 500 points are available"}
    assert await points_of(database) == (500, 0)


async def test_order_paid_publishes_the_points_redeemed_and_earned(
    database: Database, shopper: dict[str, Any]
) -> None:
    await dispatch(database, created(3, discount=500, points=300, code="WELCOME10"))
    before = len(await outbox(database))

    await dispatch(database, paid(3, total=4200, discount=500, points=300, code="WELCOME10"))

    published = (await outbox(database))[before:]
    assert [(row.event_type, row.message_key) for row, _ in published] == [
        ("points.changed", str(USER)),
        ("points.changed", str(USER)),
    ]
    assert [PointsChanged.from_event(event) for _, event in published] == [
        PointsChanged(user_id=USER, delta=-300, balance=200, reason="redeemed", order_id=3),
        PointsChanged(user_id=USER, delta=42, balance=242, reason="earned", order_id=3),
    ]
    assert await points_of(database) == (242, 0)
    assert await coupon_status(database, shopper["coupon"]["id"]) == "used"


@pytest.mark.parametrize(
    "release",
    [
        OrderRejected(order_id=4, user_id=USER, reason="stock_rejected: out of stock"),
        OrderCancelled(
            order_id=4, user_id=USER, reason="payment_timeout", cancelled_at=datetime.now(UTC)
        ),
    ],
    ids=["rejected", "cancelled"],
)
async def test_order_rejected_or_cancelled_releases_and_publishes_nothing(
    database: Database, shopper: dict[str, Any], release: OrderRejected | OrderCancelled
) -> None:
    await dispatch(database, created(4, discount=500, points=300, code="WELCOME10"))
    before = [event.id for _, event in await outbox(database)]

    await dispatch(database, release)

    # The balance never moved (only the hold), so there is no points.changed.
    assert [event.id for _, event in await outbox(database)] == before
    assert await points_of(database) == (500, 0)
    assert await coupon_status(database, shopper["coupon"]["id"]) == "available"


async def test_an_event_type_without_a_step_is_refused_for_good(database: Database) -> None:
    dispatcher = order_events_dispatcher(new_publisher())
    base = incoming(OrderRejected(order_id=5, user_id=USER, reason="x"))
    shipped = IncomingEvent(
        envelope=base.envelope.model_copy(update={"type": "order.shipped"}),
        consumer_group=base.consumer_group,
        topic=base.topic,
        message_id="msg-2",
        key="5",
    )

    async with database.session() as session:
        with pytest.raises(PermanentEventError):
            await dispatcher(session, shipped)


async def test_a_redelivered_order_created_locks_and_replies_once(
    database: Database, shopper: dict[str, Any]
) -> None:
    handler = order_events_dispatcher(new_publisher())
    event = incoming(created(6, discount=500, points=100, code="WELCOME10"))

    await handle_once(database, InboxEvent, handler, event)
    with pytest.raises(AlreadyHandled):
        await handle_once(database, InboxEvent, handler, event)

    assert [row.event_type for row, _ in await outbox(database, "trade.locked")] == ["trade.locked"]
    async with database.session(read_only=True) as session:
        handled = await session.scalar(select(func.count()).select_from(InboxEvent))
    assert handled == 1
    assert await points_of(database) == (500, 100)


# --- the contract with order's checkout ---------------------------------------------------


@pytest.mark.parametrize(
    ("typed_code", "points"), [(" welcome10 ", 250), ("WELCOME10", 0), (None, 500)]
)
async def test_the_lock_holds_exactly_what_the_quote_priced(
    client: AsyncClient,
    customer_headers: dict[str, str],
    database: Database,
    shopper: dict[str, Any],
    typed_code: str | None,
    points: int,
) -> None:
    # Order's checkout prices the cart with a quote and sends order.created with
    # the quote's coupon_code, discount_cents (the coupon's part only) and
    # points_to_redeem; its trade.locked handler rejects the order unless
    # discount_cents and points_locked come back unchanged.
    response = await client.post(
        "/api/v1/quotes",
        json={"subtotal_cents": 5000, "coupon_code": typed_code, "points_to_redeem": points},
        headers=customer_headers,
    )
    assert response.status_code == 200, response.text
    quote = response.json()
    order = OrderCreated(
        order_id=9,
        user_id=USER,
        lines=[OrderLine(product_id=7, quantity=1, unit_price_cents=5000)],
        subtotal_cents=quote["subtotal_cents"],
        discount_cents=quote["discount_cents"],
        points_to_redeem=quote["points_to_redeem"],
        total_cents=quote["total_cents"],
        coupon_code=quote["coupon_code"],
        created_at=datetime.now(UTC),
    )

    async with database.session() as session:
        reply = await lock_for_order(session, order)

    assert isinstance(reply, TradeLocked), reply
    assert reply.discount_cents == quote["discount_cents"] == (500 if typed_code else 0)
    assert reply.points_locked == quote["points_to_redeem"] == points
    assert quote["total_cents"] == 5000 - reply.discount_cents - reply.points_locked


# --- through the bus --------------------------------------------------------------------


class Observer:
    """Another process on the local bus file: publishes like order, reads trade-events."""

    GROUP = "test-trade-events-observer"

    def __init__(self, path: Path) -> None:
        self.bus = LocalBus(path, poll_interval=timedelta(milliseconds=10))
        self.seen: list[CloudEvent] = []

    async def publish(self, payload: EventData) -> CloudEvent:
        envelope = payload.to_event(source=ORDER_SOURCE, subject=payload.aggregate_key())
        await self.bus.publish(outgoing_message(envelope, payload.topic))
        return envelope

    async def publish_again(self, envelope: CloudEvent, topic: str) -> None:
        await self.bus.publish(outgoing_message(envelope, topic))

    async def read(self) -> list[CloudEvent]:
        messages: list[ReceivedMessage] = await self.bus.receive(
            self.GROUP, "trade-events", ("*",), wait=timedelta(milliseconds=100)
        )
        for message in messages:
            self.seen.append(CloudEvent.from_json(message.body))
            await self.bus.ack(self.GROUP, message)
        return self.seen

    async def wait_for(self, what: str, done: Callable[[Collection[CloudEvent]], bool]) -> None:
        async def probe() -> bool:
            return done(await self.read())

        await eventually(probe, what=what)

    def of_type(self, event_type: str) -> list[CloudEvent]:
        return [event for event in self.seen if event.type == event_type]


async def test_order_created_on_the_bus_comes_back_as_trade_locked(
    app: FastAPI,
    client: AsyncClient,
    test_context: TestContext,
    database: Database,
    shopper: dict[str, Any],
) -> None:
    observer = Observer(test_context.tmp_path / "bus.db")
    await observer.bus.start()
    try:
        order = await observer.publish(created(41, discount=500, points=200, code="WELCOME10"))

        await observer.wait_for(
            "trade.locked on the bus", lambda seen: any(e.type == "trade.locked" for e in seen)
        )
        [locked] = observer.of_type("trade.locked")
        assert (locked.source, locked.subject) == (SOURCE, "41")
        assert TradeLocked.from_event(locked) == TradeLocked(
            order_id=41, coupon_code="WELCOME10", discount_cents=500, points_locked=200
        )
        # The API's events went the same way (the relay publishes in outbox order).
        assert [e.type for e in observer.seen][:2] == ["coupon.claimed", "points.changed"]

        # A redelivered order.created changes nothing; order.paid spends and awards.
        await observer.publish_again(order, "order-events")
        await observer.publish(paid(41, total=4300, discount=500, points=200, code="WELCOME10"))

        def paid_points(seen: Collection[CloudEvent]) -> bool:
            changes = [PointsChanged.from_event(e) for e in seen if e.type == "points.changed"]
            return [change.order_id for change in changes].count(41) == 2

        await observer.wait_for("points.changed of order 41", paid_points)
        assert [e.data for e in observer.of_type("points.changed")][1:] == [
            {"user_id": USER, "delta": -200, "balance": 300, "reason": "redeemed", "order_id": 41},
            {"user_id": USER, "delta": 43, "balance": 343, "reason": "earned", "order_id": 41},
        ]
        assert len(observer.of_type("trade.locked")) == 1
        assert await points_of(database) == (343, 0)
        assert await coupon_status(database, shopper["coupon"]["id"]) == "used"
    finally:
        await observer.bus.close()

    async def all_sent() -> bool:
        async with database.session(read_only=True) as session:
            unsent = await session.scalar(
                select(func.count()).select_from(OutboxEvent).where(OutboxEvent.sent_at.is_(None))
            )
        return unsent == 0

    await eventually(all_sent, what="every outbox row marked sent")
    assert app.state.outbox_relay is not None
