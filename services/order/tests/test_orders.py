"""Orders after checkout: reading them, pay, cancel, ship, complete; who may do what."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from httpx import AsyncClient

from meshmart_common.events import (
    OrderCancelled,
    OrderCompleted,
    OrderLine,
    OrderPaid,
    OrderShipped,
    StockRejected,
)
from meshmart_common.testing import assert_problem
from services.order.tests.events import OutboxReader, SagaDelivery
from services.order.tests.shop import Shop, act, held
from services.order.tests.stubs import FakeClock, TradeStub

ORDERS = "/api/v1/orders"
HeadersOf = Callable[..., dict[str, str]]


async def status_of(api: AsyncClient, order: dict[str, Any], headers: dict[str, str]) -> str:
    response = await api.get(f"{ORDERS}/{order['id']}", headers=headers)
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


# --- pay ------------------------------------------------------------------------------


async def test_paying_an_order_awaiting_payment(
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    trade_service: TradeStub,
    deliver: SagaDelivery,
    outbox: OutboxReader,
    clock: FakeClock,
) -> None:
    trade_service.points[1001] = 300
    order = await shop.order(
        customer_headers, (2500, 2), (990, 1), coupon_code="FLAT500", points_to_redeem=300
    )
    await held(deliver, order)
    clock.advance(60)

    response = await act(api, "pay", order, customer_headers)

    assert response.status_code == 200, response.text
    paid = response.json()
    assert (paid["status"], paid["paid_at"], paid["updated_at"]) == (
        "PAID",
        "2030-05-01T12:01:00Z",
        "2030-05-01T12:01:00Z",
    )
    assert paid["total_cents"] == 5990 - 500 - 300
    assert await outbox.of_type(OrderPaid) == [
        OrderPaid(
            order_id=order["id"],
            user_id=1001,
            lines=[
                OrderLine(
                    product_id=order["lines"][0]["product_id"], quantity=2, unit_price_cents=2500
                ),
                OrderLine(
                    product_id=order["lines"][1]["product_id"], quantity=1, unit_price_cents=990
                ),
            ],
            total_cents=5190,
            discount_cents=500,
            points_redeemed=300,
            coupon_code="FLAT500",
            paid_at=clock.now(),
        )
    ]


async def test_an_order_is_paid_once(
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    deliver: SagaDelivery,
    outbox: OutboxReader,
) -> None:
    order = await shop.order(customer_headers)
    await held(deliver, order)
    assert (await act(api, "pay", order, customer_headers)).status_code == 200

    again = await act(api, "pay", order, customer_headers)

    assert assert_problem(again, 409)["detail"] == (
        f"Order {order['id']} is PAID; only an order that is AWAITING_PAYMENT can be paid."
    )
    assert len(await outbox.of_type(OrderPaid)) == 1


async def test_a_pending_or_rejected_order_cannot_be_paid(
    api: AsyncClient, shop: Shop, customer_headers: dict[str, str], deliver: SagaDelivery
) -> None:
    pending = await shop.order(customer_headers)
    rejected = await shop.order(customer_headers)
    await deliver(StockRejected(order_id=rejected["id"], reason="insufficient_stock"))

    for order, status in ((pending, "PENDING"), (rejected, "REJECTED")):
        response = await act(api, "pay", order, customer_headers)
        assert assert_problem(response, 409)["detail"].startswith(
            f"Order {order['id']} is {status}; "
        )
        assert await status_of(api, order, customer_headers) == status


async def test_only_the_customer_pays(
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    admin_headers: dict[str, str],
    headers_of: HeadersOf,
    deliver: SagaDelivery,
) -> None:
    order = await shop.order(customer_headers)
    await held(deliver, order)

    stranger = await act(api, "pay", order, headers_of(4040))
    admin = await act(api, "pay", order, admin_headers)

    assert assert_problem(stranger, 404)["detail"] == f"Order {order['id']} does not exist."
    assert assert_problem(admin, 403)["detail"] == (
        "Only the customer who placed the order can pay for it."
    )
    assert await status_of(api, order, customer_headers) == "AWAITING_PAYMENT"


# --- cancel ---------------------------------------------------------------------------


async def test_the_customer_cancels_an_order_awaiting_payment(
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    deliver: SagaDelivery,
    outbox: OutboxReader,
    clock: FakeClock,
) -> None:
    order = await shop.order(customer_headers)
    await held(deliver, order)
    clock.advance(30)

    response = await act(api, "cancel", order, customer_headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["cancellation_reason"], body["cancelled_at"]) == (
        "CANCELLED",
        "cancelled_by_customer",
        "2030-05-01T12:00:30Z",
    )
    assert await outbox.of_type(OrderCancelled) == [
        OrderCancelled(
            order_id=order["id"],
            user_id=1001,
            reason="cancelled_by_customer",
            cancelled_at=clock.now(),
        )
    ]
    again = await act(api, "cancel", order, customer_headers)
    assert assert_problem(again, 409)["detail"] == (
        f"Order {order['id']} is CANCELLED; only an order that is AWAITING_PAYMENT "
        "can be cancelled."
    )
    assert_problem(await act(api, "pay", order, customer_headers), 409)


async def test_an_admin_cancels_any_order_awaiting_payment(
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    admin_headers: dict[str, str],
    deliver: SagaDelivery,
) -> None:
    order = await shop.order(customer_headers)
    await held(deliver, order)

    response = await act(api, "cancel", order, admin_headers)

    assert response.status_code == 200, response.text
    assert response.json()["cancellation_reason"] == "cancelled_by_admin"


async def test_pending_and_paid_orders_cannot_be_cancelled(
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    deliver: SagaDelivery,
    outbox: OutboxReader,
) -> None:
    pending = await shop.order(customer_headers)
    paid = await shop.order(customer_headers)
    await held(deliver, paid)
    await act(api, "pay", paid, customer_headers)

    for order, status in ((pending, "PENDING"), (paid, "PAID")):
        response = await act(api, "cancel", order, customer_headers)
        assert assert_problem(response, 409)["detail"].startswith(
            f"Order {order['id']} is {status}; "
        )
    assert await outbox.of_type(OrderCancelled) == []


async def test_another_customer_cannot_cancel(
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    headers_of: HeadersOf,
    deliver: SagaDelivery,
) -> None:
    order = await shop.order(customer_headers)
    await held(deliver, order)
    assert_problem(await act(api, "cancel", order, headers_of(4040)), 404)
    assert await status_of(api, order, customer_headers) == "AWAITING_PAYMENT"


async def test_pay_and_cancel_at_once_let_exactly_one_win(
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    deliver: SagaDelivery,
    outbox: OutboxReader,
) -> None:
    order = await shop.order(customer_headers)
    await held(deliver, order)

    pay, cancel = await asyncio.gather(
        act(api, "pay", order, customer_headers), act(api, "cancel", order, customer_headers)
    )

    assert sorted([pay.status_code, cancel.status_code]) == [200, 409]
    final = await status_of(api, order, customer_headers)
    assert final == ("PAID" if pay.status_code == 200 else "CANCELLED")
    assert len(await outbox.of_type(OrderPaid)) + len(await outbox.of_type(OrderCancelled)) == 1


# --- ship and complete ----------------------------------------------------------------


async def test_an_admin_ships_then_completes_a_paid_order(
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    admin_headers: dict[str, str],
    deliver: SagaDelivery,
    outbox: OutboxReader,
    clock: FakeClock,
) -> None:
    order = await shop.order(customer_headers)
    await held(deliver, order)
    await act(api, "pay", order, customer_headers)

    clock.advance(3600)
    shipped = await act(api, "ship", order, admin_headers)
    clock.advance(3600)
    completed = await act(api, "complete", order, admin_headers)

    assert (shipped.json()["status"], shipped.json()["shipped_at"]) == (
        "SHIPPED",
        "2030-05-01T13:00:00Z",
    )
    assert (completed.json()["status"], completed.json()["completed_at"]) == (
        "COMPLETED",
        "2030-05-01T14:00:00Z",
    )
    assert await outbox.of_type(OrderShipped) == [OrderShipped(order_id=order["id"], user_id=1001)]
    assert await outbox.of_type(OrderCompleted) == [
        OrderCompleted(order_id=order["id"], user_id=1001)
    ]
    for action in ("ship", "complete", "cancel"):
        assert_problem(await act(api, action, order, admin_headers), 409)
    assert_problem(await act(api, "pay", order, customer_headers), 409)
    assert await status_of(api, order, customer_headers) == "COMPLETED"


async def test_shipping_and_completing_out_of_turn_is_refused(
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    admin_headers: dict[str, str],
    deliver: SagaDelivery,
) -> None:
    order = await shop.order(customer_headers)
    await held(deliver, order)

    ship = await act(api, "ship", order, admin_headers)
    complete = await act(api, "complete", order, admin_headers)

    assert assert_problem(ship, 409)["detail"] == (
        f"Order {order['id']} is AWAITING_PAYMENT; only an order that is PAID can be shipped."
    )
    assert assert_problem(complete, 409)["detail"] == (
        f"Order {order['id']} is AWAITING_PAYMENT; only an order that is SHIPPED can be completed."
    )
    await act(api, "pay", order, customer_headers)
    assert_problem(await act(api, "complete", order, admin_headers), 409)


async def test_customers_cannot_ship_or_complete_even_their_own_orders(
    api: AsyncClient, shop: Shop, customer_headers: dict[str, str], deliver: SagaDelivery
) -> None:
    order = await shop.order(customer_headers)
    await held(deliver, order)
    await act(api, "pay", order, customer_headers)

    for action in ("ship", "complete"):
        response = await act(api, action, order, customer_headers)
        assert assert_problem(response, 403)["detail"] == "This action needs the admin role."
    assert await status_of(api, order, customer_headers) == "PAID"


async def test_admin_actions_on_an_unknown_order_are_not_found(
    api: AsyncClient, admin_headers: dict[str, str]
) -> None:
    for action in ("ship", "complete", "cancel"):
        response = await api.post(f"{ORDERS}/99999/{action}", headers=admin_headers)
        assert assert_problem(response, 404)["detail"] == "Order 99999 does not exist."


# --- reading and listing --------------------------------------------------------------


async def test_someone_elses_order_is_not_found_but_an_admin_sees_it(
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    admin_headers: dict[str, str],
    headers_of: HeadersOf,
) -> None:
    order = await shop.order(customer_headers)

    stranger = await api.get(f"{ORDERS}/{order['id']}", headers=headers_of(4040))
    admin = await api.get(f"{ORDERS}/{order['id']}", headers=admin_headers)

    assert assert_problem(stranger, 404)["detail"] == f"Order {order['id']} does not exist."
    assert admin.status_code == 200
    assert admin.json() == order


async def test_customers_list_their_own_orders_newest_first(
    api: AsyncClient, shop: Shop, headers_of: HeadersOf, clock: FakeClock
) -> None:
    alice, bob = headers_of(5001), headers_of(5002)
    alices = []
    for price in (100, 200, 300):
        alices.append(await shop.order(alice, (price, 1)))
        clock.advance(1)
    await shop.order(bob, (999, 1))

    first = await api.get(ORDERS, params={"page_size": 2}, headers=alice)
    second = await api.get(ORDERS, params={"page_size": 2, "page": 2}, headers=alice)

    assert first.status_code == 200
    assert [o["total_cents"] for o in first.json()["items"]] == [300, 200]
    assert [o["total_cents"] for o in second.json()["items"]] == [100]
    assert (first.json()["total"], first.json()["page"], first.json()["page_size"]) == (3, 1, 2)
    assert {o["user_id"] for o in first.json()["items"] + second.json()["items"]} == {5001}
    bobs = (await api.get(ORDERS, headers=bob)).json()
    assert [(o["user_id"], o["total_cents"]) for o in bobs["items"]] == [(5002, 999)]


async def test_admins_list_every_order_or_one_users(
    api: AsyncClient, shop: Shop, headers_of: HeadersOf, admin_headers: dict[str, str]
) -> None:
    alice, bob = headers_of(6001), headers_of(6002)
    await shop.order(alice, (100, 1))
    await shop.order(bob, (200, 1))
    await shop.order(bob, (300, 1))

    everyone = (await api.get(ORDERS, headers=admin_headers)).json()
    bobs = (await api.get(ORDERS, params={"user_id": 6002}, headers=admin_headers)).json()

    assert everyone["total"] == 3
    assert sorted(o["user_id"] for o in everyone["items"]) == [6001, 6002, 6002]
    assert bobs["total"] == 2
    assert {o["user_id"] for o in bobs["items"]} == {6002}


async def test_orders_can_be_filtered_by_status(
    api: AsyncClient, shop: Shop, customer_headers: dict[str, str], deliver: SagaDelivery
) -> None:
    pending = await shop.order(customer_headers, (100, 1))
    rejected = await shop.order(customer_headers, (200, 1))
    await deliver(StockRejected(order_id=rejected["id"], reason="insufficient_stock"))

    listed = {
        status: [
            o["id"]
            for o in (
                await api.get(ORDERS, params={"status": status}, headers=customer_headers)
            ).json()["items"]
        ]
        for status in ("PENDING", "REJECTED", "PAID")
    }

    assert listed == {"PENDING": [pending["id"]], "REJECTED": [rejected["id"]], "PAID": []}
    assert_problem(
        await api.get(ORDERS, params={"status": "LOST"}, headers=customer_headers),
        422,
        field="status",
    )


async def test_a_customer_cannot_list_another_users_orders(
    api: AsyncClient, customer_headers: dict[str, str]
) -> None:
    other = await api.get(ORDERS, params={"user_id": 4040}, headers=customer_headers)
    own = await api.get(ORDERS, params={"user_id": 1001}, headers=customer_headers)
    assert assert_problem(other, 403)["detail"] == (
        "Only admins can list the orders of other users."
    )
    assert own.json() == {"items": [], "total": 0, "page": 1, "page_size": 20}


@pytest.mark.parametrize("order_id", ["0", "-5", "2147483648", "x", "1e3"])
async def test_order_ids_in_paths_are_bounded(
    api: AsyncClient, admin_headers: dict[str, str], order_id: str
) -> None:
    assert_problem(await api.get(f"{ORDERS}/{order_id}", headers=admin_headers), 422)
    for action in ("pay", "cancel", "ship", "complete"):
        response = await api.post(f"{ORDERS}/{order_id}/{action}", headers=admin_headers)
        assert_problem(response, 422, field="order_id")


async def test_orders_need_a_signed_in_user(api: AsyncClient) -> None:
    assert_problem(await api.get(ORDERS), 401)
    assert_problem(await api.get(f"{ORDERS}/1"), 401)
    for action in ("pay", "cancel", "ship", "complete"):
        assert_problem(await api.post(f"{ORDERS}/1/{action}"), 401)


async def test_list_query_parameters_are_bounded(
    api: AsyncClient, admin_headers: dict[str, str]
) -> None:
    for params, field in (
        ({"user_id": 0}, "user_id"),
        ({"user_id": 2**31}, "user_id"),
        ({"page": 0}, "page"),
        ({"page_size": 101}, "page_size"),
    ):
        response = await api.get(ORDERS, params=params, headers=admin_headers)
        assert_problem(response, 422, field=field)
