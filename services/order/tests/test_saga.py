"""The saga replies: both holds -> AWAITING_PAYMENT, any refusal -> REJECTED, the timeout."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import select

from meshmart_common.events import (
    EventData,
    OrderAwaitingPayment,
    OrderCancelled,
    OrderCreated,
    OrderPaid,
    OrderPaymentTimeout,
    OrderRejected,
    StockRejected,
    StockReserved,
    TradeLocked,
    TradeRejected,
    UserRegistered,
)
from meshmart_common.messaging.consumer import (
    AlreadyHandled,
    ConsumerSpec,
    EventDispatcher,
    IncomingEvent,
    PermanentEventError,
)
from meshmart_common.messaging.envelope import CloudEvent, InvalidEvent
from meshmart_common.messaging.topology import groups_of
from meshmart_common.testing import assert_problem
from order_service.components import Components
from order_service.domain.orders import OrderService
from order_service.domain.outbox_port import OutgoingEvent
from order_service.events.saga import react
from order_service.repository.models import InboxEvent
from services.order.tests.events import OutboxReader, SagaDelivery
from services.order.tests.shop import Shop
from services.order.tests.stubs import FakeClock

ORDERS = "/api/v1/orders"


def locked(order: dict[str, Any]) -> TradeLocked:
    """The trade.locked reply matching the order's quote."""
    return TradeLocked(
        order_id=order["id"],
        coupon_code=order["coupon_code"],
        discount_cents=order["discount_cents"],
        points_locked=order["points_redeemed"],
    )


async def read(api: AsyncClient, headers: dict[str, str], order_id: int) -> dict[str, Any]:
    response = await api.get(f"{ORDERS}/{order_id}", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def after_checkout(outbox: OutboxReader) -> list[OutgoingEvent]:
    """What the outbox got after the order.created of checkout."""
    return [e for e in await outbox.events() if not isinstance(e.payload, OrderCreated)]


@pytest.mark.parametrize("trade_first", [False, True], ids=["stock-first", "trade-first"])
async def test_both_holds_move_the_order_to_awaiting_payment_and_start_the_clock(
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    deliver: SagaDelivery,
    outbox: OutboxReader,
    clock: FakeClock,
    trade_first: bool,
) -> None:
    order = await shop.order(customer_headers, (1500, 2), coupon_code="FLAT500")
    replies: list[EventData] = [StockReserved(order_id=order["id"]), locked(order)]
    if trade_first:
        replies.reverse()

    clock.advance(10)
    first = await deliver(replies[0])
    assert first == []
    assert (await read(api, customer_headers, order["id"]))["status"] == "PENDING"

    clock.advance(5)
    second = await deliver(replies[1])

    pay_by = clock.now() + timedelta(seconds=900)
    assert second == [
        OutgoingEvent(
            OrderAwaitingPayment(
                order_id=order["id"], user_id=1001, total_cents=2500, pay_by=pay_by
            )
        ),
        OutgoingEvent(OrderPaymentTimeout(order_id=order["id"]), deliver_at=pay_by),
    ]
    assert await after_checkout(outbox) == second
    now = await read(api, customer_headers, order["id"])
    assert now["status"] == "AWAITING_PAYMENT"
    assert now["pay_by"] == "2030-05-01T12:15:15Z"
    assert now["updated_at"] == "2030-05-01T12:00:15Z"


async def test_a_repeated_hold_changes_nothing(
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    deliver: SagaDelivery,
    outbox: OutboxReader,
) -> None:
    order = await shop.order(customer_headers)
    assert await deliver(StockReserved(order_id=order["id"])) == []
    assert await deliver(StockReserved(order_id=order["id"])) == []
    assert len(await deliver(locked(order))) == 2
    assert await deliver(locked(order)) == []
    assert await deliver(StockReserved(order_id=order["id"])) == []
    assert len(await outbox.of_type(OrderAwaitingPayment)) == 1
    assert len(await outbox.of_type(OrderPaymentTimeout)) == 1


async def test_holds_arriving_together_advance_the_order_once(
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    deliver: SagaDelivery,
    outbox: OutboxReader,
) -> None:
    order = await shop.order(customer_headers)
    results = await asyncio.gather(
        deliver(StockReserved(order_id=order["id"])), deliver(locked(order))
    )
    assert sorted(len(r) for r in results) == [0, 2]
    assert (await read(api, customer_headers, order["id"]))["status"] == "AWAITING_PAYMENT"
    assert len(await outbox.of_type(OrderAwaitingPayment)) == 1


async def test_stock_refusal_rejects_a_pending_order(
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    deliver: SagaDelivery,
    outbox: OutboxReader,
) -> None:
    order = await shop.order(customer_headers, (300, 1), (400, 2))
    short = order["lines"][1]["product_id"]
    assert await deliver(locked(order)) == []

    events = await deliver(
        StockRejected(order_id=order["id"], reason="insufficient_stock", product_ids=[short])
    )

    reason = f"stock_rejected: insufficient_stock (products {short})"
    assert events == [
        OutgoingEvent(OrderRejected(order_id=order["id"], user_id=1001, reason=reason))
    ]
    assert await after_checkout(outbox) == events
    now = await read(api, customer_headers, order["id"])
    assert (now["status"], now["rejection_reason"], now["pay_by"]) == ("REJECTED", reason, None)


async def test_trade_refusal_after_the_stock_is_held_rejects_the_order(
    api: AsyncClient, shop: Shop, customer_headers: dict[str, str], deliver: SagaDelivery
) -> None:
    order = await shop.order(customer_headers)
    assert await deliver(StockReserved(order_id=order["id"])) == []

    events = await deliver(TradeRejected(order_id=order["id"], reason="coupon_expired"))

    assert [type(e.payload) for e in events] == [OrderRejected]
    assert events[0].payload == OrderRejected(
        order_id=order["id"], user_id=1001, reason="trade_rejected: coupon_expired"
    )
    assert (await read(api, customer_headers, order["id"]))["status"] == "REJECTED"


async def test_replies_after_a_rejection_are_no_ops(
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    deliver: SagaDelivery,
    outbox: OutboxReader,
) -> None:
    order = await shop.order(customer_headers)
    await deliver(StockRejected(order_id=order["id"], reason="insufficient_stock"))
    before = await read(api, customer_headers, order["id"])

    assert await deliver(TradeRejected(order_id=order["id"], reason="late")) == []
    assert await deliver(StockRejected(order_id=order["id"], reason="again")) == []
    assert await deliver(locked(order)) == []
    assert await deliver(StockReserved(order_id=order["id"])) == []

    assert await read(api, customer_headers, order["id"]) == before
    assert before["rejection_reason"] == "stock_rejected: insufficient_stock"
    assert len(await outbox.of_type(OrderRejected)) == 1
    assert await outbox.of_type(OrderAwaitingPayment) == []


async def test_a_refusal_after_both_holds_is_a_no_op(
    api: AsyncClient, shop: Shop, customer_headers: dict[str, str], deliver: SagaDelivery
) -> None:
    order = await shop.order(customer_headers)
    await deliver(StockReserved(order_id=order["id"]))
    await deliver(locked(order))

    assert await deliver(StockRejected(order_id=order["id"], reason="late")) == []
    assert await deliver(TradeRejected(order_id=order["id"], reason="late")) == []
    assert (await read(api, customer_headers, order["id"]))["status"] == "AWAITING_PAYMENT"


async def test_a_lock_that_differs_from_the_quote_rejects_the_order(
    api: AsyncClient, shop: Shop, customer_headers: dict[str, str], deliver: SagaDelivery
) -> None:
    order = await shop.order(customer_headers, (2000, 1), coupon_code="SAVE10")
    await deliver(StockReserved(order_id=order["id"]))

    events = await deliver(
        TradeLocked(order_id=order["id"], coupon_code="SAVE10", discount_cents=999, points_locked=0)
    )

    reason = (
        "trade_mismatch: locked a discount of 999 cents and 0 points, "
        "the order was priced with 200 cents and 0 points"
    )
    assert events == [
        OutgoingEvent(OrderRejected(order_id=order["id"], user_id=1001, reason=reason))
    ]
    assert (await read(api, customer_headers, order["id"]))["status"] == "REJECTED"


@pytest.mark.parametrize(
    "reply",
    [
        StockReserved(order_id=424242),
        StockRejected(order_id=424242, reason="x"),
        TradeLocked(order_id=424242, discount_cents=0, points_locked=0),
        TradeRejected(order_id=424242, reason="x"),
        OrderPaymentTimeout(order_id=424242),
    ],
    ids=lambda e: e.event_type,
)
async def test_replies_for_an_unknown_order_are_logged_no_ops(
    deliver: SagaDelivery,
    outbox: OutboxReader,
    reply: EventData,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("WARNING", logger="order.orders"):
        assert await deliver(reply) == []
    assert await outbox.events() == []
    assert f"{reply.event_type} for unknown order 424242 ignored" in caplog.text


# --- the payment timeout ---------------------------------------------------------------


async def awaiting_payment(
    shop: Shop, headers: dict[str, str], deliver: SagaDelivery
) -> dict[str, Any]:
    order = await shop.order(headers, (1200, 1))
    await deliver(StockReserved(order_id=order["id"]))
    await deliver(locked(order))
    return order


async def test_the_timeout_cancels_an_order_still_awaiting_payment(
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    deliver: SagaDelivery,
    clock: FakeClock,
) -> None:
    order = await awaiting_payment(shop, customer_headers, deliver)
    clock.advance(900)

    events = await deliver(OrderPaymentTimeout(order_id=order["id"]))

    assert events == [
        OutgoingEvent(
            OrderCancelled(
                order_id=order["id"],
                user_id=1001,
                reason="payment_timeout",
                cancelled_at=clock.now(),
            )
        )
    ]
    now = await read(api, customer_headers, order["id"])
    assert (now["status"], now["cancellation_reason"], now["cancelled_at"]) == (
        "CANCELLED",
        "payment_timeout",
        "2030-05-01T12:15:00Z",
    )
    assert await deliver(OrderPaymentTimeout(order_id=order["id"])) == []


async def test_the_timeout_leaves_a_paid_order_alone(
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    deliver: SagaDelivery,
    outbox: OutboxReader,
) -> None:
    order = await awaiting_payment(shop, customer_headers, deliver)
    paid = await api.post(f"{ORDERS}/{order['id']}/pay", headers=customer_headers)
    assert paid.status_code == 200, paid.text

    assert await deliver(OrderPaymentTimeout(order_id=order["id"])) == []

    assert (await read(api, customer_headers, order["id"]))["status"] == "PAID"
    assert await outbox.of_type(OrderCancelled) == []
    assert len(await outbox.of_type(OrderPaid)) == 1


async def test_the_timeout_leaves_pending_and_rejected_orders_alone(
    api: AsyncClient, shop: Shop, customer_headers: dict[str, str], deliver: SagaDelivery
) -> None:
    pending = await shop.order(customer_headers)
    rejected = await shop.order(customer_headers)
    await deliver(TradeRejected(order_id=rejected["id"], reason="no_points"))

    assert await deliver(OrderPaymentTimeout(order_id=pending["id"])) == []
    assert await deliver(OrderPaymentTimeout(order_id=rejected["id"])) == []

    assert (await read(api, customer_headers, pending["id"]))["status"] == "PENDING"
    assert (await read(api, customer_headers, rejected["id"]))["status"] == "REJECTED"


async def test_paying_after_the_time_ran_out_is_refused_until_the_timeout_cancels(
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    deliver: SagaDelivery,
    clock: FakeClock,
) -> None:
    order = await awaiting_payment(shop, customer_headers, deliver)
    clock.advance(899)
    clock.advance(1)

    late = await api.post(f"{ORDERS}/{order['id']}/pay", headers=customer_headers)

    assert assert_problem(late, 409)["detail"] == (
        f"The time to pay for order {order['id']} ran out at 2030-05-01T12:15:00+00:00; "
        "it is being cancelled."
    )
    await deliver(OrderPaymentTimeout(order_id=order["id"]))
    assert (await read(api, customer_headers, order["id"]))["status"] == "CANCELLED"


async def test_a_timeout_racing_a_payment_lets_exactly_one_win(
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    deliver: SagaDelivery,
    outbox: OutboxReader,
) -> None:
    order = await awaiting_payment(shop, customer_headers, deliver)

    paid, timed_out = await asyncio.gather(
        api.post(f"{ORDERS}/{order['id']}/pay", headers=customer_headers),
        deliver(OrderPaymentTimeout(order_id=order["id"])),
    )

    status = (await read(api, customer_headers, order["id"]))["status"]
    if paid.status_code == 200:
        assert (status, timed_out) == ("PAID", [])
        assert await outbox.of_type(OrderCancelled) == []
    else:
        assert_problem(paid, 409)
        assert status == "CANCELLED"
        assert [type(e.payload) for e in timed_out] == [OrderCancelled]
        assert await outbox.of_type(OrderPaid) == []


# --- the handler entry point ------------------------------------------------------------


def test_order_runs_its_topology_groups_with_a_handler_for_every_tag(app: Any) -> None:
    consumers: list[ConsumerSpec] = app.state.consumers
    assert [spec.group for spec in consumers] == list(groups_of("order"))
    routes = {}
    for spec in consumers:
        assert isinstance(spec.handler, EventDispatcher)
        assert spec.handler.event_types == set(spec.group.tags)
        routes[spec.group.name] = (spec.group.topic, sorted(spec.handler.event_types))
    assert routes == {
        "order-stock-replies": ("product-events", ["stock.rejected", "stock.reserved"]),
        "order-trade-replies": ("trade-events", ["trade.locked", "trade.rejected"]),
        "order-payment-timeouts": ("order-timeouts", ["order.payment_timeout"]),
    }


async def test_a_redelivered_reply_is_handled_once(
    app: Any,
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    deliver: SagaDelivery,
    outbox: OutboxReader,
) -> None:
    order = await shop.order(customer_headers)
    rejected = TradeRejected(order_id=order["id"], reason="no_points")
    assert len(await deliver(rejected, event_id="trade-reply-1")) == 1

    with pytest.raises(AlreadyHandled):
        await deliver(rejected, event_id="trade-reply-1")

    assert len(await outbox.of_type(OrderRejected)) == 1
    async with app.state.database.session() as session:
        inbox = list(await session.scalars(select(InboxEvent)))
    assert [(row.consumer_group, row.event_id, row.event_type) for row in inbox] == [
        ("order-trade-replies", "trade-reply-1", "trade.rejected")
    ]


async def test_a_reply_that_does_not_parse_is_refused_for_good(app: Any) -> None:
    [stock] = [s for s in app.state.consumers if s.group.name == "order-stock-replies"]
    broken = CloudEvent(source="/meshmart/product", type="stock.reserved", data={"order": 1})
    wrong = CloudEvent(source="/meshmart/product", type="stock.changed", data={})
    async with app.state.database.session() as session:
        for envelope, error in ((broken, InvalidEvent), (wrong, PermanentEventError)):
            event = IncomingEvent(
                envelope=envelope,
                consumer_group=stock.group.name,
                topic=stock.group.topic,
                message_id=envelope.id,
                key="1",
            )
            with pytest.raises(error):
                await stock.handler(session, event)


async def test_an_event_order_does_not_consume_is_refused(app: Any, components: Components) -> None:
    async with app.state.database.session() as session:
        service = OrderService(
            session, clock=components.clock, payment_timeout=components.payment_timeout
        )
        with pytest.raises(ValueError, match=r"does not consume user\.registered"):
            await react(
                service,
                UserRegistered(user_id=1, email="a@example.com", registered_at=FakeClock().now()),
            )
