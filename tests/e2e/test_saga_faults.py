"""The checkout saga survives faults: a consumer service killed mid-burst, a broker outage.

The five services run as separate processes (tests.processes), so one of them
can be SIGKILLed and started again on the same port and data folder. Orders wait
for payment for much longer than the tests run, so every order ends
AWAITING_PAYMENT or REJECTED and the stock counters can be checked exactly.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from meshmart_devstack.rocketmq import RocketMQServer
from tests.e2e.test_checkout_saga import SAGA_ENV
from tests.processes import services
from tests.shop import Shop, eventually

pytestmark = pytest.mark.e2e

# Nothing times out while the test runs: AWAITING_PAYMENT stays AWAITING_PAYMENT.
FAULT_ENV = {**SAGA_ENV, "PAYMENT_TIMEOUT_SECONDS": "3600"}
SETTLED = {"AWAITING_PAYMENT", "REJECTED"}


@dataclass
class Burst:
    """Buyers each placing a few single-product orders from a thread pool."""

    shop: Shop
    products: list[int]
    buyers: list[dict[str, str]]
    orders_each: int
    within: float = 120.0
    created: list[tuple[int, int]] = field(default_factory=list)  # (buyer index, order id)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> int:
        with self.lock:
            return len(self.created)

    def _buyer(self, index: int) -> None:
        headers = self.buyers[index]
        rng = random.Random(index)
        deadline = time.monotonic() + self.within
        placed = 0
        while placed < self.orders_each and time.monotonic() < deadline:
            product_id = rng.choice(self.products)
            try:
                put = self.shop.call(
                    "PUT",
                    "order",
                    f"/cart/items/{product_id}",
                    headers,
                    json={"quantity": rng.randint(1, 2)},
                )
                response = (
                    self.shop.call("POST", "order", "/orders", headers, json={})
                    if put.status_code == 200
                    else put
                )
            except httpx.HTTPError as exc:
                with self.lock:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.3)
                continue
            if response.status_code == 201:
                with self.lock:
                    self.created.append((index, response.json()["id"]))
                placed += 1
            else:
                with self.lock:
                    self.failures.append(f"{response.status_code}: {response.text[:200]}")
                time.sleep(0.3)

    def run(self) -> ThreadPoolExecutor:
        pool = ThreadPoolExecutor(max_workers=len(self.buyers))
        for index in range(len(self.buyers)):
            pool.submit(self._buyer, index)
        return pool


def all_orders(shop: Shop, buyers: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Every order of every buyer, as the order service lists them."""
    orders: list[dict[str, Any]] = []
    for headers in buyers:
        page = shop.call("GET", "order", "/orders", headers, params={"page_size": 100}).json()
        assert page["total"] == len(page["items"]), page
        orders += page["items"]
    return orders


def settled(shop: Shop, buyers: list[dict[str, str]]) -> list[dict[str, Any]] | None:
    orders = all_orders(shop, buyers)
    return orders if all(o["status"] in SETTLED for o in orders) else None


def check_stock_adds_up(
    shop: Shop, products: dict[int, int], orders: list[dict[str, Any]]
) -> dict[str, int]:
    """Reserved stock is exactly what the AWAITING_PAYMENT orders hold; nothing was sold."""
    held = dict.fromkeys(products, 0)
    for order in orders:
        if order["status"] == "AWAITING_PAYMENT":
            for line in order["lines"]:
                held[line["product_id"]] += line["quantity"]
    for product_id, stock in products.items():
        assert held[product_id] <= stock, (product_id, held[product_id], stock)

    def matches() -> bool:
        return all(
            shop.stock(p) == {"on_hand": s, "reserved": held[p], "available": s - held[p]}
            for p, s in products.items()
        )

    eventually(matches, within=30, what="stock counters to match the orders")
    statuses = [o["status"] for o in orders]
    return {s: statuses.count(s) for s in SETTLED}


def test_killing_product_mid_burst_loses_and_doubles_nothing(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    base = tmp_path_factory.mktemp("fault-kill")
    with services(base, FAULT_ENV) as (running, shop):
        products = {shop.product(stock=30): 30 for _ in range(4)}
        buyers = [shop.customer() for _ in range(25)]
        burst = Burst(shop, list(products), buyers, orders_each=4)
        pool = burst.run()
        try:
            eventually(lambda: burst.count() >= 25, within=60, what="the burst to get going")
            running.kill("product")
            killed_at = burst.count()
            time.sleep(3)
            running.start("product")
            running.wait_ready("product")
        finally:
            pool.shutdown(wait=True)
        assert killed_at < len(buyers) * 4, "the burst ended before product was killed"
        assert burst.count() == len(buyers) * 4, burst.failures[-5:]

        orders = eventually(lambda: settled(shop, buyers), within=120, what="every order to settle")
        assert sorted(o["id"] for o in orders) == sorted(order for _, order in burst.created)
        counts = check_stock_adds_up(shop, products, orders)
        assert counts["AWAITING_PAYMENT"] > 0
        # After the restart the counters stay put: no late redelivery reserves twice.
        time.sleep(2)
        assert all_orders(shop, buyers) == orders
        check_stock_adds_up(shop, products, orders)


def test_broker_outage_delays_the_saga_but_loses_nothing(
    tmp_path_factory: pytest.TempPathFactory, rocketmq_server: RocketMQServer
) -> None:
    env = {
        **FAULT_ENV,
        "BUS_BACKEND": "rocketmq",
        "ROCKETMQ_ENDPOINTS": rocketmq_server.endpoints,
    }
    base = tmp_path_factory.mktemp("fault-broker")
    with services(base, env) as (_running, shop):
        products = {shop.product(stock=15): 15 for _ in range(3)}
        buyers = [shop.customer() for _ in range(10)]
        before = Burst(shop, list(products), buyers[:5], orders_each=2)
        before.run().shutdown(wait=True)
        assert before.count() == 10, before.failures[-5:]

        rocketmq_server.stop_broker()
        outage_began = time.monotonic()
        try:
            during = Burst(shop, list(products), buyers[5:], orders_each=3, within=30)
            during.run().shutdown(wait=True)
            # The outbox decouples checkout from the bus: every checkout answered 201.
            assert during.failures == []
            assert during.count() == 15
            pending = all_orders(shop, buyers[5:])
            assert {o["status"] for o in pending} == {"PENDING"}
            time.sleep(max(0.0, 10 - (time.monotonic() - outage_began)))
        finally:
            rocketmq_server.start_broker()

        orders = eventually(lambda: settled(shop, buyers), within=150, what="every order to settle")
        assert len(orders) == 25
        counts = check_stock_adds_up(shop, products, orders)
        assert counts["AWAITING_PAYMENT"] > 0


def test_a_coupon_that_expires_before_trade_locks_it_rejects_the_order(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Invalid coupon: the quote accepted it, the lock (later, asynchronously) does not.

    Trade's consumers are held back deterministically: while the order is
    placed, the trade port is served by a second trade process on the same
    database whose bus is a different file, so only the real trade process,
    started again after the campaign has ended, sees order.created.
    """
    base = tmp_path_factory.mktemp("fault-coupon")
    with services(base, FAULT_ENV) as (running, shop):
        buyer = shop.customer()
        shop.grant_points(buyer, 40)
        product_id = shop.product(stock=5)
        running.stop("trade")
        running.start("trade", LOCAL_BUS_PATH=str(base / "detached-bus.db"))
        running.wait_ready("trade")

        window = 4
        code = shop.coupon(buyer, percent=10, valid_for=window)
        ends = time.time() + window
        created = shop.checkout(buyer, product_id, 3, coupon_code=code, points_to_redeem=40)
        assert created.status_code == 201, created.text
        order = created.json()
        assert order["discount_cents"] > 0, order
        running.stop("trade")
        assert time.time() < ends, "the order was placed after the campaign ended"

        # Product reserves at once; trade has not answered yet.
        eventually(lambda: shop.stock(product_id)["reserved"] == 3, what="stock reserved")
        assert shop.order(buyer, order["id"])["status"] == "PENDING"
        time.sleep(max(0.0, ends + 1 - time.time()))
        running.start("trade")
        running.wait_ready("trade")

        rejected = shop.wait_status(buyer, order["id"], "REJECTED", "AWAITING_PAYMENT")
        assert rejected["status"] == "REJECTED", rejected
        eventually(
            lambda: shop.stock(product_id) == {"on_hand": 5, "reserved": 0, "available": 5},
            what="stock released",
        )
        assert shop.points(buyer)["available"] == 40
        assert shop.coupon_status(buyer, code) == "expired"
