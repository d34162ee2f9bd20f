"""The checkout saga across the five real service processes.

The launcher starts user, product, order, trade and data on the local bus
(and, for the happy path, on a real RocketMQ 5). Each test drives the public
REST API only, the way a tester would, and checks the effects in every
service: order status, stock counters, coupon state, points and analytics.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.shop import Shop, eventually
from tests.stack import RunningStack, launch_stack

pytestmark = pytest.mark.e2e

PAYMENT_TIMEOUT_SECONDS = 6
SAGA_ENV = {
    "PAYMENT_TIMEOUT_SECONDS": str(PAYMENT_TIMEOUT_SECONDS),
    "CONSUMER_RETRY_BASE_SECONDS": "0.2",
    "CONSUMER_RETRY_MAX_SECONDS": "2",
    "OUTBOX_POLL_INTERVAL_MS": "50",
}
FINAL_OR_WAITING = {"AWAITING_PAYMENT", "REJECTED", "PAID", "CANCELLED"}


def _shop(stack: RunningStack) -> Iterator[Shop]:
    with httpx.Client(timeout=30) as http:
        login = http.post(
            f"{stack.urls['user']}/api/v1/auth/login",
            json={"email": "admin@meshmart.local", "password": "meshmart-admin"},
        )
        assert login.status_code == 200, login.text
        yield Shop(stack, http, {"Authorization": f"Bearer {login.json()['access_token']}"})


@pytest.fixture(scope="module")
def local_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    """The platform on the local bus."""
    with launch_stack(tmp_path_factory.mktemp("saga"), extra_env=SAGA_ENV) as stack:
        yield from _shop(stack)


def _happy_path(shop: Shop) -> None:
    buyer = shop.customer()
    shop.grant_points(buyer, 300)
    code = shop.coupon(buyer, percent=10)
    product_id = shop.product(stock=10, price_cents=2500)

    created = shop.checkout(
        buyer, product_id, 2, key=uuid.uuid4().hex, coupon_code=code, points_to_redeem=200
    )
    assert created.status_code == 201, created.text
    order = created.json()
    assert order["status"] == "PENDING"
    assert order["subtotal_cents"] == 5000
    assert order["discount_cents"] == 500
    assert order["total_cents"] == 5000 - 500 - 200

    awaiting = shop.wait_status(buyer, order["id"], "AWAITING_PAYMENT", "REJECTED")
    assert awaiting["status"] == "AWAITING_PAYMENT", awaiting
    assert shop.stock(product_id) == {"on_hand": 10, "reserved": 2, "available": 8}
    assert shop.coupon_status(buyer, code) == "locked"
    assert shop.points(buyer)["available"] == 100

    paid = shop.call("POST", "order", f"/orders/{order['id']}/pay", buyer)
    assert paid.status_code == 200, paid.text
    assert paid.json()["status"] == "PAID"

    eventually(
        lambda: shop.stock(product_id) == {"on_hand": 8, "reserved": 0, "available": 8},
        what="stock committed",
    )
    eventually(lambda: shop.coupon_status(buyer, code) == "used", what="coupon consumed")
    earned = (5000 - 500 - 200) // 100
    eventually(lambda: shop.points(buyer)["balance"] == 300 - 200 + earned, what="points")
    overview = eventually(
        lambda: (
            (o := shop.call("GET", "data", "/stats/overview", shop.admin).json())[
                "orders_by_status"
            ]["PAID"]
            >= 1
            and o
        ),
        what="data counts the sale",
    )
    assert overview["gmv_cents"] >= 5000 - 500 - 200


def test_happy_path_ends_paid_with_every_effect_applied_on_the_local_bus(local_shop: Shop) -> None:
    _happy_path(local_shop)


def test_the_same_idempotency_key_returns_the_same_order(local_shop: Shop) -> None:
    buyer = local_shop.customer()
    product_id = local_shop.product(stock=5)
    key = uuid.uuid4().hex
    first = local_shop.checkout(buyer, product_id, 1, key=key)
    assert first.status_code == 201, first.text
    again = local_shop.call("POST", "order", "/orders", {**buyer, "Idempotency-Key": key}, json={})
    assert again.status_code in (200, 201), again.text
    assert again.json()["id"] == first.json()["id"]
    orders = local_shop.call("GET", "order", "/orders", buyer).json()
    assert orders["total"] == 1
    local_shop.wait_status(buyer, first.json()["id"], "AWAITING_PAYMENT")
    assert local_shop.stock(product_id)["reserved"] == 1


def test_out_of_stock_order_is_rejected_and_holds_nothing(local_shop: Shop) -> None:
    buyer = local_shop.customer()
    local_shop.grant_points(buyer, 100)
    product_id = local_shop.product(stock=1)
    created = local_shop.checkout(buyer, product_id, 2, points_to_redeem=50)
    assert created.status_code == 201, created.text
    rejected = local_shop.wait_status(buyer, created.json()["id"], "REJECTED", "AWAITING_PAYMENT")
    assert rejected["status"] == "REJECTED"
    assert local_shop.stock(product_id) == {"on_hand": 1, "reserved": 0, "available": 1}
    eventually(lambda: local_shop.points(buyer)["available"] == 100, what="points released")


def test_cancel_releases_stock_coupon_and_points(local_shop: Shop) -> None:
    buyer = local_shop.customer()
    local_shop.grant_points(buyer, 100)
    code = local_shop.coupon(buyer)
    product_id = local_shop.product(stock=3)
    created = local_shop.checkout(buyer, product_id, 2, coupon_code=code, points_to_redeem=100)
    assert created.status_code == 201, created.text
    order_id = created.json()["id"]
    local_shop.wait_status(buyer, order_id, "AWAITING_PAYMENT")
    cancelled = local_shop.call("POST", "order", f"/orders/{order_id}/cancel", buyer)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "CANCELLED"
    eventually(lambda: local_shop.stock(product_id)["reserved"] == 0, what="stock released")
    eventually(lambda: local_shop.coupon_status(buyer, code) == "available", what="coupon back")
    eventually(lambda: local_shop.points(buyer)["available"] == 100, what="points refunded")
    assert local_shop.call("POST", "order", f"/orders/{order_id}/pay", buyer).status_code == 409


def test_payment_timeout_cancels_and_releases_everything(local_shop: Shop) -> None:
    buyer = local_shop.customer()
    local_shop.grant_points(buyer, 50)
    code = local_shop.coupon(buyer)
    product_id = local_shop.product(stock=2)
    created = local_shop.checkout(buyer, product_id, 2, coupon_code=code, points_to_redeem=50)
    assert created.status_code == 201, created.text
    order_id = created.json()["id"]
    local_shop.wait_status(buyer, order_id, "AWAITING_PAYMENT")
    assert local_shop.stock(product_id)["available"] == 0
    assert local_shop.coupon_status(buyer, code) == "locked"
    assert local_shop.points(buyer)["available"] == 0
    cancelled = local_shop.wait_status(
        buyer, order_id, "CANCELLED", within=PAYMENT_TIMEOUT_SECONDS + 60
    )
    assert cancelled["status"] == "CANCELLED"
    eventually(
        lambda: local_shop.stock(product_id) == {"on_hand": 2, "reserved": 0, "available": 2},
        what="stock back",
    )
    eventually(lambda: local_shop.coupon_status(buyer, code) == "available", what="coupon back")
    eventually(lambda: local_shop.points(buyer)["available"] == 50, what="points refunded")


def test_twenty_buyers_race_for_the_last_five_units(local_shop: Shop) -> None:
    product_id = local_shop.product(stock=5)
    buyers = [local_shop.customer() for _ in range(20)]

    def buy(headers: dict[str, str]) -> int:
        response = local_shop.checkout(headers, product_id, 1)
        assert response.status_code == 201, response.text
        order_id: int = response.json()["id"]
        return order_id

    with ThreadPoolExecutor(max_workers=20) as pool:
        order_ids = list(pool.map(buy, buyers))
    finals = [
        local_shop.wait_status(b, o, "AWAITING_PAYMENT", "REJECTED")["status"]
        for b, o in zip(buyers, order_ids, strict=True)
    ]
    assert finals.count("AWAITING_PAYMENT") == 5
    assert finals.count("REJECTED") == 15
    assert local_shop.stock(product_id) == {"on_hand": 5, "reserved": 5, "available": 0}


def test_happy_path_on_real_rocketmq(
    tmp_path_factory: pytest.TempPathFactory, rocketmq_server: Any
) -> None:
    env = {**SAGA_ENV, "BUS_BACKEND": "rocketmq", "ROCKETMQ_ENDPOINTS": rocketmq_server.endpoints}
    with launch_stack(tmp_path_factory.mktemp("saga-rmq"), extra_env=env) as stack:
        for shop in _shop(stack):
            _happy_path(shop)
