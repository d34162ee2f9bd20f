"""Discovery, failover and live configuration with every service behind Consul.

The services run as real processes with DISCOVERY_BACKEND=consul against the
Consul agent double (tests.consul_double), which runs their /readyz checks
every second as the real agent would. Two product instances serve order's
calls; the tests kill one, stop both, change settings in KV and take Consul
away, and watch what a customer sees through the public API.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import httpx
import pytest

from tests.consul_double import ConsulDouble
from tests.e2e.test_checkout_saga import SAGA_ENV
from tests.processes import Services, services
from tests.shop import Shop, eventually

pytestmark = pytest.mark.e2e

CHECK_INTERVAL_SECONDS = 1
INSTANCES = ("user", "product", "product#2", "trade", "data", "order")


@dataclass
class Platform:
    """The running instances, the shop client and the Consul double they use."""

    running: Services
    shop: Shop
    consul: ConsulDouble

    def instance_id(self, instance: str) -> str:
        service = instance.split("#", 1)[0]
        return f"{service}-127.0.0.1-{self.running.port(instance)}"

    def passing(self, service: str) -> set[str]:
        return {
            instance_id
            for instance_id, registration in self.consul.services().items()
            if registration["Service"] == service
            and self.consul.check_status(instance_id) == "passing"
        }

    def attempts(self, instance_id: str) -> float:
        """Order's attempts of calls to one product instance (its /metrics)."""
        text = httpx.get(f"{self.shop.stack.urls['order']}/metrics", timeout=5).text
        pattern = re.compile(
            r'^upstream_requests_total\{(?=[^}]*upstream="product")(?=[^}]*instance="'
            + re.escape(instance_id)
            + r'")[^}]*\} (\S+)$',
            re.MULTILINE,
        )
        return sum(float(value) for value in pattern.findall(text))


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    base = tmp_path_factory.mktemp("discovery")
    with ConsulDouble() as consul:
        env = {
            **SAGA_ENV,
            "PAYMENT_TIMEOUT_SECONDS": "3600",
            "DISCOVERY_BACKEND": "consul",
            "CONSUL_HTTP_ADDR": consul.url,
            "CONSUL_CHECK_INTERVAL_SECONDS": str(CHECK_INTERVAL_SECONDS),
            "CONSUL_CHECK_TIMEOUT_SECONDS": "1",
            "CONSUL_WAIT_SECONDS": "10",
            # The steady stream below checks out faster than a customer would.
            "RATE_LIMIT_CHECKOUT_PER_MINUTE": "0",
        }
        with services(base, env, instances=INSTANCES) as (running, shop):
            platform = Platform(running, shop, consul)
            eventually(
                lambda: len(platform.passing("product")) == 2,
                within=30,
                what="both product instances to pass their checks",
            )
            yield platform


@dataclass
class Traffic:
    """A steady stream of cart reads and checkouts from a few customers."""

    shop: Shop
    product_id: int
    buyers: list[dict[str, str]]
    stop: threading.Event = field(default_factory=threading.Event)
    statuses: dict[str, list[int]] = field(default_factory=lambda: {"cart": [], "checkout": []})
    failures: list[str] = field(default_factory=list)

    def _run(self, buyer: dict[str, str]) -> None:
        while not self.stop.is_set():
            put = self.shop.call(
                "PUT", "order", f"/cart/items/{self.product_id}", buyer, json={"quantity": 1}
            )
            cart = self.shop.call("GET", "order", "/cart", buyer)
            checkout = self.shop.call("POST", "order", "/orders", buyer, json={})
            self.statuses["cart"] += [put.status_code, cart.status_code]
            self.statuses["checkout"].append(checkout.status_code)
            if checkout.status_code != 201:
                self.failures.append(f"checkout {checkout.status_code}: {checkout.text[:300]}")
            if cart.status_code == 200 and cart.json()["stale"]:
                self.failures.append("a cart read was stale")

    def __enter__(self) -> Traffic:
        self.threads = [threading.Thread(target=self._run, args=(b,)) for b in self.buyers]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)


def test_services_register_with_consul_and_deregister_on_shutdown(platform: Platform) -> None:
    registered = platform.consul.services()
    for instance in INSTANCES:
        assert platform.instance_id(instance) in registered, instance
    for body in platform.consul.received_registrations:
        assert "://" not in body["Address"]
        assert body["Check"]["HTTP"].endswith("/readyz")
        deregister_after = platform.consul.deregister_critical_after(body["ID"])
        assert deregister_after is not None
        assert deregister_after >= 60

    # A graceful stop deregisters at once; a start registers again.
    data = platform.instance_id("data")
    platform.running.stop("data")
    assert data in platform.consul.deregistered
    assert data not in platform.consul.services()
    platform.running.start("data")
    platform.running.wait_ready("data")
    eventually(lambda: data in platform.passing("data"), within=30, what="data to register again")


def test_killing_one_product_instance_fails_no_checkout(platform: Platform) -> None:
    shop = platform.shop
    product_id = shop.product(stock=10_000, price_cents=1500)
    buyers = [shop.customer() for _ in range(3)]
    first, second = platform.instance_id("product"), platform.instance_id("product#2")

    with Traffic(shop, product_id, buyers) as traffic:
        eventually(
            lambda: platform.attempts(first) > 5 and platform.attempts(second) > 5,
            within=60,
            what="order's calls to reach both product instances",
        )
        platform.running.kill("product#2")
        killed_at = time.monotonic()
        last_count, last_change = platform.attempts(second), killed_at
        dropped_after: float | None = None
        # Watch order's attempts to the dead instance until they have stood
        # still for a while after Consul's check marked it critical.
        while time.monotonic() - last_change < 6 * CHECK_INTERVAL_SECONDS + 4:
            time.sleep(0.1)
            count = platform.attempts(second)
            if count != last_count:
                last_count, last_change = count, time.monotonic()
            if dropped_after is None and second not in platform.passing("product"):
                dropped_after = time.monotonic() - killed_at
            assert time.monotonic() - killed_at < 90, "order kept calling the dead instance"
        before = len(traffic.statuses["checkout"])
        eventually(
            lambda: len(traffic.statuses["checkout"]) > before + 5,
            within=60,
            what="checkouts to go on with one product instance",
        )

    last_routed = last_change - killed_at
    print(
        f"\nkill -> last request routed to the dead product instance: {last_routed:.2f} s; "
        "its Consul check went critical after "
        + (f"{dropped_after:.2f} s" if dropped_after is not None else "(not seen)")
    )
    assert second not in platform.passing("product")
    assert traffic.failures == []
    assert set(traffic.statuses["cart"]) == {200}
    assert len(traffic.statuses["checkout"]) > 10

    platform.running.start("product#2")
    platform.running.wait_ready("product#2")
    eventually(
        lambda: len(platform.passing("product")) == 2, within=30, what="product#2 to come back"
    )


def test_with_product_stopped_the_cart_is_stale_and_checkout_503_until_it_returns(
    platform: Platform,
) -> None:
    shop = platform.shop
    buyer = shop.customer()
    product_id = shop.product(stock=5, price_cents=4200)
    assert shop.call("PUT", "order", f"/cart/items/{product_id}", buyer, json={"quantity": 2})
    assert shop.call("GET", "order", "/cart", buyer).json()["stale"] is False

    for instance in ("product", "product#2"):
        platform.running.stop(instance)
    eventually(lambda: not platform.passing("product"), within=30, what="product to be gone")

    cart = shop.call("GET", "order", "/cart", buyer)
    assert cart.status_code == 200, cart.text
    assert cart.json()["stale"] is True
    [line] = cart.json()["items"]
    assert (line["unit_price_cents"], line["stale"]) == (4200, True)
    refused = shop.call("POST", "order", "/orders", buyer, json={})
    assert refused.status_code == 503, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["status"] == 503
    assert shop.call("GET", "order", "/orders", buyer).json()["total"] == 0

    for instance in ("product", "product#2"):
        platform.running.start(instance)
    platform.running.wait_ready("product", "product#2")

    def checkout_works() -> bool:
        return shop.call("POST", "order", "/orders", buyer, json={}).status_code == 201

    eventually(checkout_works, within=60, what="checkout to recover by itself")
    assert shop.call("GET", "order", "/orders", buyer).json()["total"] == 1


def admin_config(platform: Platform, service: str) -> dict[str, dict[str, object]]:
    body = platform.shop.call("GET", service, "/admin/config", platform.shop.admin).json()
    settings: dict[str, dict[str, object]] = {s["key"]: s for s in body["settings"]}
    return {**settings, "_rejected": {r["key"]: r for r in body["rejected"]}}


def test_live_config_changes_apply_without_a_restart(platform: Platform) -> None:
    shop, consul = platform.shop, platform.consul
    order_pid = platform.running.processes["order"].pid
    try:
        consul.kv_put("meshmart/config/order/payment_timeout_seconds", "120")
        consul.kv_put("meshmart/config/order/rate_limit_checkout_per_minute", "1")
        consul.kv_put("meshmart/config/shared/log_level", "debug")
        eventually(
            lambda: admin_config(platform, "order")["payment_timeout_seconds"]["value"] == 120,
            within=30,
            what="the payment timeout to apply",
        )
        config = admin_config(platform, "order")
        assert config["payment_timeout_seconds"]["source"] == (
            "consul:meshmart/config/order/payment_timeout_seconds"
        )
        assert config["rate_limit_checkout_per_minute"]["value"] == 1
        eventually(
            lambda: all(
                admin_config(platform, service)["log_level"]["value"] == "DEBUG"
                for service in ("order", "product")
            ),
            within=30,
            what="the shared log level to reach order and product",
        )

        buyer = shop.customer()
        product_id = shop.product(stock=5)
        created = shop.checkout(buyer, product_id, 1)
        assert created.status_code == 201, created.text
        order = shop.wait_status(buyer, created.json()["id"], "AWAITING_PAYMENT")
        window = datetime.fromisoformat(order["pay_by"]) - datetime.fromisoformat(
            order["created_at"]
        )
        assert 100 <= window.total_seconds() <= 200, order
        limited = shop.checkout(buyer, product_id, 1)
        assert limited.status_code == 429, limited.text
        assert int(limited.headers["Retry-After"]) >= 1

        # An invalid value is refused; the one in effect stays.
        consul.kv_put("meshmart/config/order/payment_timeout_seconds", "-5")
        eventually(
            lambda: "payment_timeout_seconds" in admin_config(platform, "order")["_rejected"],
            within=30,
            what="the refusal to show",
        )
        assert admin_config(platform, "order")["payment_timeout_seconds"]["value"] == 120
    finally:
        for key in (
            "order/payment_timeout_seconds",
            "order/rate_limit_checkout_per_minute",
            "shared/log_level",
        ):
            consul.kv_delete(f"meshmart/config/{key}")
    eventually(
        lambda: admin_config(platform, "order")["rate_limit_checkout_per_minute"]["value"] == 0,
        within=30,
        what="the deleted override to give way to the environment's value",
    )
    assert platform.running.processes["order"].pid == order_pid, "order was restarted"


def test_without_consul_services_keep_serving_and_report_degraded(platform: Platform) -> None:
    shop = platform.shop
    buyer = shop.customer()
    product_id = shop.product(stock=5)
    platform.consul.stop()
    try:

        def degraded() -> bool:
            ready = httpx.get(f"{shop.stack.urls['order']}/readyz", timeout=5)
            return ready.status_code == 200 and ready.json()["status"] == "degraded"

        eventually(degraded, within=30, what="order's readiness to report degraded")
        ready = httpx.get(f"{shop.stack.urls['order']}/readyz", timeout=5).json()
        assert "consul" in ready["checks"]["registry"]
        created = shop.checkout(buyer, product_id, 1, key=uuid.uuid4().hex)
        assert created.status_code == 201, created.text
        cart = shop.call("GET", "order", "/cart", buyer)
        assert cart.status_code == 200
    finally:
        platform.consul.start()
    eventually(
        lambda: (
            httpx.get(f"{shop.stack.urls['order']}/readyz", timeout=5).json()["status"] == "ready"
        ),
        within=60,
        what="readiness to recover",
    )
    shop.wait_status(buyer, created.json()["id"], "AWAITING_PAYMENT")
