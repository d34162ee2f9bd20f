"""The checkout saga across the five real service processes.

The launcher starts user, product, order, trade and data on the local bus
(and, for the happy path, on a real RocketMQ 5). Each test drives the public
REST API only, the way a tester would, and checks the effects in every
service: order status, stock counters, coupon state, points and analytics.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

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


def eventually(probe: Callable[[], Any], *, within: float = 60.0, what: str = "") -> Any:
    """Poll ``probe`` until it returns something truthy; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what or probe}: last value {last!r}")


@dataclass
class Shop:
    """A REST client for the whole platform with an admin session."""

    stack: RunningStack
    http: httpx.Client
    admin: dict[str, str]

    def url(self, service: str, path: str) -> str:
        return f"{self.stack.urls[service]}/api/v1{path}"

    def call(
        self,
        method: str,
        service: str,
        path: str,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        return self.http.request(method, self.url(service, path), headers=headers, **kwargs)

    def customer(self) -> dict[str, str]:
        email = f"shopper-{uuid.uuid4().hex[:10]}@example.com"
        body = {"email": email, "password": "correct horse battery"}
        assert self.call("POST", "user", "/auth/register", json=body).status_code == 201
        login = self.call("POST", "user", "/auth/login", json=body)
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        return {"Authorization": f"Bearer {token}"}

    def user_id(self, headers: dict[str, str]) -> int:
        me: int = self.call("GET", "user", "/users/me", headers).json()["id"]
        return me

    def product(self, stock: int, price_cents: int = 2500) -> int:
        categories = self.call("GET", "product", "/categories").json()
        sku = f"SAGA-{uuid.uuid4().hex[:8].upper()}"
        created = self.call(
            "POST",
            "product",
            "/products",
            self.admin,
            json={
                "sku": sku,
                "title": f"Saga item {sku}",
                "price_cents": price_cents,
                "category_id": categories[0]["id"],
                "stock": stock,
            },
        )
        assert created.status_code == 201, created.text
        product_id: int = created.json()["id"]
        return product_id

    def stock(self, product_id: int) -> dict[str, int]:
        stock: dict[str, int] = self.call("GET", "product", f"/products/{product_id}").json()[
            "stock"
        ]
        return stock

    def checkout(
        self,
        headers: dict[str, str],
        product_id: int,
        quantity: int,
        key: str | None = None,
        **body: Any,
    ) -> httpx.Response:
        put = self.call(
            "PUT", "order", f"/cart/items/{product_id}", headers, json={"quantity": quantity}
        )
        assert put.status_code == 200, put.text
        extra = {"Idempotency-Key": key} if key else {}
        return self.call("POST", "order", "/orders", {**headers, **extra}, json=body)

    def order(self, headers: dict[str, str], order_id: int) -> dict[str, Any]:
        order: dict[str, Any] = self.call("GET", "order", f"/orders/{order_id}", headers).json()
        return order

    def wait_status(
        self, headers: dict[str, str], order_id: int, *statuses: str, within: float = 60.0
    ) -> dict[str, Any]:
        order: dict[str, Any] = eventually(
            lambda: (o := self.order(headers, order_id))["status"] in statuses and o,
            within=within,
            what=f"order {order_id} to reach {statuses}",
        )
        return order

    def points(self, headers: dict[str, str]) -> dict[str, Any]:
        points: dict[str, Any] = self.call("GET", "trade", "/points", headers).json()
        return points

    def grant_points(self, headers: dict[str, str], points: int) -> None:
        granted = self.call(
            "POST",
            "trade",
            "/points/grants",
            self.admin,
            json={"user_id": self.user_id(headers), "points": points},
        )
        assert granted.status_code == 201, granted.text

    def coupon(self, headers: dict[str, str], percent: int = 10, valid_for: int = 86400) -> str:
        """Create a campaign open for ``valid_for`` more seconds; ``headers``' user claims it."""
        code = f"SAGA{uuid.uuid4().hex[:6].upper()}"
        now = time.time()
        campaign = self.call(
            "POST",
            "trade",
            "/coupon-campaigns",
            self.admin,
            json={
                "code": code,
                "name": "saga test",
                "discount_type": "percent",
                "discount_value": percent,
                "min_spend_cents": 0,
                "total_quantity": 100,
                "per_user_limit": 1,
                "starts_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60)),
                "ends_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + valid_for)),
            },
        )
        assert campaign.status_code == 201, campaign.text
        claim = self.call("POST", "trade", "/coupons/claim", headers, json={"code": code})
        assert claim.status_code == 201, claim.text
        return code

    def coupon_status(self, headers: dict[str, str], code: str) -> str:
        coupons = self.call("GET", "trade", "/coupons", headers).json()
        status: str = next(c["status"] for c in coupons if c["code"] == code)
        return status


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
