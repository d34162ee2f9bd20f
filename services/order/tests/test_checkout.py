"""Checkout: current prices, the trade quote, one order per Idempotency-Key, order.created."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from httpx import AsyncClient

from meshmart_common.events import OrderCreated, OrderLine
from meshmart_common.testing import assert_problem
from services.order.tests.events import OutboxReader
from services.order.tests.shop import Shop
from services.order.tests.stubs import FakeClock, Mode, ProductStub, TradeStub

ORDERS = "/api/v1/orders"
CART = "/api/v1/cart"
HeadersOf = Callable[..., dict[str, str]]


async def cart_items(api: AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = await api.get(CART, headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def order_count(api: AsyncClient, headers: dict[str, str]) -> int:
    response = await api.get(ORDERS, headers=headers)
    assert response.status_code == 200, response.text
    total: int = response.json()["total"]
    return total


async def test_checkout_stores_a_pending_order_priced_by_product_and_trade(
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    customer_token: str,
    trade_service: TradeStub,
    outbox: OutboxReader,
    clock: FakeClock,
) -> None:
    trade_service.points[1001] = 250
    lamp = shop.product(1999, title="Desk Lamp")
    mug = shop.product(500, title="Mug")
    await shop.put(customer_headers, lamp.id, 2)
    await shop.put(customer_headers, mug.id, 1)

    response = await api.post(
        ORDERS,
        json={"coupon_code": "save10", "points_to_redeem": 100, "address_id": 77},
        headers={**customer_headers, "X-Request-ID": "checkout-1"},
    )

    assert response.status_code == 201, response.text
    order = response.json()
    assert response.headers["location"] == f"{ORDERS}/{order['id']}"
    # 4498 subtotal, 10% off = 449, 100 points = 100 cents: 3949.
    assert {k: v for k, v in order.items() if k not in ("id", "lines")} == {
        "user_id": 1001,
        "status": "PENDING",
        "currency": "USD",
        "subtotal_cents": 4498,
        "discount_cents": 449,
        "points_redeemed": 100,
        "points_discount_cents": 100,
        "total_cents": 3949,
        "coupon_code": "SAVE10",
        "address_id": 77,
        "created_at": "2030-05-01T12:00:00Z",
        "updated_at": "2030-05-01T12:00:00Z",
        "pay_by": None,
        "paid_at": None,
        "shipped_at": None,
        "completed_at": None,
        "cancelled_at": None,
        "cancellation_reason": None,
        "rejection_reason": None,
    }
    assert order["lines"] == [
        {
            "product_id": lamp.id,
            "title": "Desk Lamp",
            "unit_price_cents": 1999,
            "quantity": 2,
            "line_total_cents": 3998,
        },
        {
            "product_id": mug.id,
            "title": "Mug",
            "unit_price_cents": 500,
            "quantity": 1,
            "line_total_cents": 500,
        },
    ]
    assert await cart_items(api, customer_headers) == []
    assert (await api.get(f"{ORDERS}/{order['id']}", headers=customer_headers)).json() == order

    [quote_call] = trade_service.seen
    assert quote_call.body == {
        "subtotal_cents": 4498,
        "coupon_code": "save10",
        "points_to_redeem": 100,
    }
    assert quote_call.authorization == f"Bearer {customer_token}"
    assert quote_call.request_id == "checkout-1"

    assert await outbox.of_type(OrderCreated) == [
        OrderCreated(
            order_id=order["id"],
            user_id=1001,
            lines=[
                OrderLine(product_id=lamp.id, quantity=2, unit_price_cents=1999),
                OrderLine(product_id=mug.id, quantity=1, unit_price_cents=500),
            ],
            subtotal_cents=4498,
            discount_cents=449,
            points_to_redeem=100,
            total_cents=3949,
            coupon_code="SAVE10",
            created_at=clock.now(),
        )
    ]
    assert [e.deliver_at for e in await outbox.events()] == [None]


async def test_checkout_without_a_body_uses_no_coupon_and_no_points(
    api: AsyncClient, shop: Shop, customer_headers: dict[str, str], outbox: OutboxReader
) -> None:
    await shop.put(customer_headers, shop.product(1250).id, 2)

    response = await api.post(ORDERS, headers=customer_headers)

    assert response.status_code == 201, response.text
    order = response.json()
    assert (order["subtotal_cents"], order["discount_cents"], order["total_cents"]) == (
        2500,
        0,
        2500,
    )
    assert (order["coupon_code"], order["points_redeemed"], order["address_id"]) == (None, 0, None)
    [created] = await outbox.of_type(OrderCreated)
    assert (created.coupon_code, created.points_to_redeem, created.total_cents) == (None, 0, 2500)


async def test_checkout_sells_at_the_price_product_asks_now(
    api: AsyncClient, shop: Shop, customer_headers: dict[str, str]
) -> None:
    chair = shop.product(10_000, title="Chair")
    await shop.put(customer_headers, chair.id, 1)
    chair.price_cents = 8_000
    chair.title = "Chair (sale)"

    order = (await api.post(ORDERS, json={}, headers=customer_headers)).json()

    assert order["lines"][0]["unit_price_cents"] == 8_000
    assert order["lines"][0]["title"] == "Chair (sale)"
    assert order["total_cents"] == 8_000


async def test_checkout_of_an_empty_cart_is_refused(
    api: AsyncClient, customer_headers: dict[str, str], outbox: OutboxReader
) -> None:
    response = await api.post(ORDERS, json={}, headers=customer_headers)
    assert assert_problem(response, 409)["detail"] == "The cart is empty."
    assert await outbox.events() == []


async def test_checkout_with_a_product_no_longer_sold_is_refused_and_keeps_the_cart(
    api: AsyncClient, shop: Shop, customer_headers: dict[str, str], outbox: OutboxReader
) -> None:
    kept = shop.product(100)
    retired = shop.product(200)
    for product in (kept, retired):
        await shop.put(customer_headers, product.id, 1)
    retired.deleted = True

    response = await api.post(ORDERS, json={}, headers=customer_headers)

    body = assert_problem(response, 409)
    assert body["detail"] == (
        f"No longer sold: product {retired.id}. Remove them from the cart to check out."
    )
    assert len(await cart_items(api, customer_headers)) == 2
    assert await order_count(api, customer_headers) == 0
    assert await outbox.events() == []


async def test_checkout_does_not_judge_stock_the_saga_does(
    api: AsyncClient, shop: Shop, customer_headers: dict[str, str]
) -> None:
    scarce = shop.product(300)
    await shop.put(customer_headers, scarce.id, 5)
    scarce.on_hand = 1

    response = await api.post(ORDERS, json={}, headers=customer_headers)

    assert response.status_code == 201
    assert response.json()["status"] == "PENDING"


@pytest.mark.parametrize(
    ("mode", "status"), [(Mode.DOWN, 503), (Mode.SLOW, 504), (Mode.BROKEN, 502)]
)
async def test_checkout_while_product_is_out_sells_nothing(
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    product_service: ProductStub,
    trade_service: TradeStub,
    outbox: OutboxReader,
    mode: Mode,
    status: int,
) -> None:
    await shop.put(customer_headers, shop.product(900, title="Lamp").id, 1)
    product_service.mode = mode

    cart = (await api.get(CART, headers=customer_headers)).json()
    response = await api.post(ORDERS, json={}, headers=customer_headers)

    assert cart["stale"] is True
    assert cart["items"][0]["title"] == "Lamp"
    assert assert_problem(response, status)["detail"].startswith("product ")
    assert trade_service.seen == []
    product_service.mode = Mode.UP
    assert len(await cart_items(api, customer_headers)) == 1
    assert await order_count(api, customer_headers) == 0
    assert await outbox.events() == []


@pytest.mark.parametrize(
    ("mode", "status", "detail"),
    [
        (Mode.DOWN, 503, "trade is unavailable."),
        (Mode.SLOW, 504, "trade did not answer within 0.5 s."),
        (Mode.BROKEN, 502, "trade failed to answer POST /api/v1/quotes (status 500)."),
    ],
)
async def test_checkout_while_trade_is_out_sells_nothing(
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    trade_service: TradeStub,
    outbox: OutboxReader,
    mode: Mode,
    status: int,
    detail: str,
) -> None:
    await shop.put(customer_headers, shop.product(900).id, 1)
    trade_service.mode = mode

    response = await api.post(ORDERS, json={"coupon_code": "SAVE10"}, headers=customer_headers)

    assert assert_problem(response, status)["detail"] == detail
    assert len(await cart_items(api, customer_headers)) == 1
    assert await order_count(api, customer_headers) == 0
    assert await outbox.events() == []


async def test_trades_refusal_is_passed_on_with_its_field_errors(
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    trade_service: TradeStub,
    outbox: OutboxReader,
) -> None:
    trade_service.points[1001] = 50
    await shop.put(customer_headers, shop.product(900).id, 1)

    response = await api.post(
        ORDERS, json={"coupon_code": "NOPE", "points_to_redeem": 80}, headers=customer_headers
    )

    body = assert_problem(response, 422, field="coupon_code")
    assert body["detail"] == "The quote cannot be made."
    assert body["errors"] == [
        {"field": "coupon_code", "message": "no coupon NOPE"},
        {"field": "points_to_redeem", "message": "only 50 points available"},
    ]
    assert len(await cart_items(api, customer_headers)) == 1
    assert await outbox.events() == []


async def test_a_quote_that_does_not_add_up_is_never_used(
    api: AsyncClient, shop: Shop, customer_headers: dict[str, str], trade_service: TradeStub
) -> None:
    trade_service.tamper_total_by = -1
    await shop.put(customer_headers, shop.product(900).id, 1)

    response = await api.post(ORDERS, json={"coupon_code": "SAVE10"}, headers=customer_headers)

    body = assert_problem(response, 502)
    assert body["detail"] == "trade sent a quote that does not match the checkout."
    assert await order_count(api, customer_headers) == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"points_to_redeem": -1}, "points_to_redeem"),
        ({"points_to_redeem": 1.5}, "points_to_redeem"),
        ({"points_to_redeem": "10"}, "points_to_redeem"),
        ({"points_to_redeem": True}, "points_to_redeem"),
        ({"points_to_redeem": 10**12}, "points_to_redeem"),
        ({"coupon_code": ""}, "coupon_code"),
        ({"coupon_code": "   "}, "coupon_code"),
        ({"coupon_code": "two words"}, "coupon_code"),
        ({"coupon_code": "x" * 65}, "coupon_code"),
        ({"coupon_code": 10}, "coupon_code"),
        ({"address_id": 0}, "address_id"),
        ({"address_id": "7"}, "address_id"),
        ({"address_id": 2**31}, "address_id"),
        ({"lines": []}, "lines"),
    ],
)
async def test_checkout_bodies_are_strict(
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    body: dict[str, Any],
    field: str,
) -> None:
    await shop.put(customer_headers, shop.product(900).id, 1)
    response = await api.post(ORDERS, json=body, headers=customer_headers)
    assert_problem(response, 422, field=field)
    assert len(await cart_items(api, customer_headers)) == 1


async def test_checkout_needs_a_signed_in_user(api: AsyncClient) -> None:
    assert_problem(await api.post(ORDERS, json={}), 401)


# --- Idempotency-Key ------------------------------------------------------------------


async def test_a_retry_with_the_same_key_returns_the_same_order(
    api: AsyncClient, shop: Shop, customer_headers: dict[str, str], outbox: OutboxReader
) -> None:
    await shop.put(customer_headers, shop.product(1500).id, 2)
    headers = {**customer_headers, "Idempotency-Key": "checkout-7f3a"}
    body = {"coupon_code": "FLAT500", "address_id": 5}

    first = await api.post(ORDERS, json=body, headers=headers)
    retry = await api.post(ORDERS, json=body, headers=headers)

    assert first.status_code == 201, first.text
    assert retry.status_code == 200, retry.text
    assert retry.json() == first.json()
    assert retry.json()["total_cents"] == 2500
    assert retry.headers["location"] == first.headers["location"]
    assert retry.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await order_count(api, customer_headers) == 1
    assert len(await outbox.of_type(OrderCreated)) == 1


async def test_a_retry_is_answered_even_after_the_cart_was_filled_again(
    api: AsyncClient, shop: Shop, customer_headers: dict[str, str]
) -> None:
    headers = {**customer_headers, "Idempotency-Key": "k-1"}
    await shop.put(customer_headers, shop.product(100).id, 1)
    first = await api.post(ORDERS, json={}, headers=headers)
    await shop.put(customer_headers, shop.product(999).id, 3)

    retry = await api.post(ORDERS, json={}, headers=headers)

    assert retry.status_code == 200
    assert retry.json()["id"] == first.json()["id"]
    assert retry.json()["total_cents"] == 100
    assert len(await cart_items(api, customer_headers)) == 1


async def test_the_same_key_with_another_body_is_refused(
    api: AsyncClient, shop: Shop, customer_headers: dict[str, str]
) -> None:
    headers = {**customer_headers, "Idempotency-Key": "k-2"}
    await shop.put(customer_headers, shop.product(100).id, 1)
    first = await api.post(ORDERS, json={"address_id": 1}, headers=headers)
    await shop.put(customer_headers, shop.product(100).id, 1)

    other = await api.post(ORDERS, json={"address_id": 2}, headers=headers)

    body = assert_problem(other, 422, field="Idempotency-Key")
    assert body["detail"] == (
        "This Idempotency-Key was already used for a different checkout request."
    )
    assert await order_count(api, customer_headers) == 1
    assert len(await cart_items(api, customer_headers)) == 1
    again = await api.post(ORDERS, json={"address_id": 1}, headers=headers)
    assert again.json() == first.json()


async def test_keys_belong_to_their_user_and_are_case_sensitive(
    api: AsyncClient, shop: Shop, headers_of: HeadersOf
) -> None:
    alice, bob = headers_of(3001), headers_of(3002)
    orders = []
    for headers, key in ((alice, "Key-A"), (bob, "Key-A"), (alice, "key-a")):
        await shop.put(headers, shop.product(100).id, 1)
        response = await api.post(ORDERS, json={}, headers={**headers, "Idempotency-Key": key})
        assert response.status_code == 201, response.text
        orders.append(response.json())
    assert len({o["id"] for o in orders}) == 3
    assert [o["user_id"] for o in orders] == [3001, 3002, 3001]


async def test_concurrent_retries_with_one_key_create_one_order(
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    product_service: ProductStub,
    outbox: OutboxReader,
) -> None:
    await shop.put(customer_headers, shop.product(4200).id, 1)
    # Every request reaches the insert before any commits.
    product_service.delay_seconds = 0.05
    headers = {**customer_headers, "Idempotency-Key": "double-click"}

    responses = await asyncio.gather(
        *(api.post(ORDERS, json={}, headers=headers) for _ in range(5))
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 200, 200, 201], [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert await order_count(api, customer_headers) == 1
    assert len(await outbox.of_type(OrderCreated)) == 1
    assert await cart_items(api, customer_headers) == []


async def test_concurrent_checkouts_without_a_key_sell_the_cart_once(
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    product_service: ProductStub,
    outbox: OutboxReader,
) -> None:
    await shop.put(customer_headers, shop.product(4200).id, 1)
    product_service.delay_seconds = 0.05

    first, second = await asyncio.gather(
        api.post(ORDERS, json={}, headers=customer_headers),
        api.post(ORDERS, json={}, headers=customer_headers),
    )

    assert sorted([first.status_code, second.status_code]) == [201, 409]
    loser = first if first.status_code == 409 else second
    assert assert_problem(loser, 409)["detail"] in {
        "The cart changed during checkout; review it and try again.",
        "The cart is empty.",
    }
    assert await order_count(api, customer_headers) == 1
    assert len(await outbox.of_type(OrderCreated)) == 1


@pytest.mark.parametrize(
    "key",
    ["", "with space", "x" * 129, "tab\there", "caf\u00e9"],
    ids=["empty", "space", "too-long", "tab", "non-ascii"],
)
async def test_an_idempotency_key_is_1_to_128_visible_ascii_characters(
    api: AsyncClient, shop: Shop, customer_headers: dict[str, str], key: str
) -> None:
    await shop.put(customer_headers, shop.product(100).id, 1)
    response = await api.post(
        ORDERS,
        json={},
        headers=[
            *((name.encode(), value.encode()) for name, value in customer_headers.items()),
            (b"Idempotency-Key", key.encode("latin-1")),
        ],
    )
    assert_problem(response, 422, field="Idempotency-Key")
    assert await order_count(api, customer_headers) == 0


async def test_the_longest_idempotency_key_is_accepted(
    api: AsyncClient, shop: Shop, customer_headers: dict[str, str]
) -> None:
    await shop.put(customer_headers, shop.product(100).id, 1)
    key = "~!" * 64
    response = await api.post(ORDERS, json={}, headers={**customer_headers, "Idempotency-Key": key})
    assert response.status_code == 201, response.text
