"""A full checkout through the compose gateway (real nginx) in front of the real services.

The five services run as local processes (tests/processes.py); nginx runs the
gateway configuration of deploy/compose/gateway with each compose name mapped
to a local port. Everything the shopper does goes through the gateway's one
port. The services trust X-Forwarded-For from the gateway only, as in compose
(FORWARDED_ALLOW_IPS), so each client behind the gateway counts as itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace

import httpx
import pytest

from meshmart_common.testing import free_port
from tests.deploy.compose_file import SERVICES
from tests.deploy.gateway_nginx import Gateway, running_gateway
from tests.processes import Services, services
from tests.shop import Shop, eventually
from tests.stack import RunningStack

pytestmark = pytest.mark.e2e

LOGINS_PER_MINUTE = 5
SERVICE_ENV = {
    # The gateway reaches the services from 127.0.0.1 (compose: its fixed address).
    "FORWARDED_ALLOW_IPS": "127.0.0.1",
    "RATE_LIMIT_LOGIN_PER_MINUTE": str(LOGINS_PER_MINUTE),
    "CONSUMER_RETRY_BASE_SECONDS": "0.2",
    "CONSUMER_RETRY_MAX_SECONDS": "2",
    "OUTBOX_POLL_INTERVAL_MS": "50",
}


@dataclass
class Platform:
    """The running services, the gateway in front of them, and a shop that only
    talks to the gateway."""

    services: Services
    gateway: Gateway
    shop: Shop


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    base = tmp_path_factory.mktemp("gateway-e2e")
    with services(base, SERVICE_ENV) as (running, direct):
        upstreams = {name: f"127.0.0.1:{running.port(name)}" for name in SERVICES}
        with running_gateway(free_port(), upstreams) as gateway:
            stack: RunningStack = replace(direct.stack, urls=dict.fromkeys(SERVICES, gateway.url))
            with httpx.Client(timeout=30) as http:
                yield Platform(running, gateway, Shop(stack, http, direct.admin))


def test_a_full_checkout_through_the_gateway(platform: Platform) -> None:
    shop = platform.shop
    buyer = shop.customer()
    shop.grant_points(buyer, 300)
    code = shop.coupon(buyer, percent=10)
    product_id = shop.product(stock=10, price_cents=2500)

    request_id = f"checkout-{uuid.uuid4().hex}"
    put = shop.call("PUT", "order", f"/cart/items/{product_id}", buyer, json={"quantity": 2})
    assert put.status_code == 200, put.text
    created = shop.call(
        "POST",
        "order",
        "/orders",
        {**buyer, "Idempotency-Key": uuid.uuid4().hex, "X-Request-ID": request_id},
        json={"coupon_code": code, "points_to_redeem": 200},
    )
    assert created.status_code == 201, created.text
    assert created.headers.get_list("x-request-id") == [request_id]
    order = created.json()
    assert (order["status"], order["total_cents"]) == ("PENDING", 5000 - 500 - 200)

    awaiting = shop.wait_status(buyer, order["id"], "AWAITING_PAYMENT", "REJECTED")
    assert awaiting["status"] == "AWAITING_PAYMENT", awaiting
    assert shop.stock(product_id) == {"on_hand": 10, "reserved": 2, "available": 8}
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
    eventually(
        lambda: (
            shop.call("GET", "data", "/stats/overview", shop.admin)
            .json()["orders_by_status"]
            .get("PAID", 0)
            >= 1
        ),
        what="data counts the sale",
    )

    # nginx carried the checkout to order, under the shopper's request id.
    entry = platform.gateway.entry(request_id)
    assert (entry["service"], entry["status"], entry["uri"]) == ("order", 201, "/api/v1/orders")
    assert entry["upstream_addr"] == f"127.0.0.1:{platform.services.port('order')}"
    # nginx writes a line after its response: the last call's line may still be on its way.
    everyone = {"user", "product", "order", "trade", "data"}
    eventually(
        lambda: {e["service"] for e in platform.gateway.log_entries()} >= everyone,
        within=5.0,
        what="an access log line from every service",
    )
    served = {e["service"] for e in platform.gateway.log_entries()}
    assert served >= {"user", "product", "order", "trade", "data"}


def test_tokens_verify_against_the_jwks_served_through_the_gateway(platform: Platform) -> None:
    jwks = platform.shop.http.get(f"{platform.gateway.url}/.well-known/jwks.json")
    assert jwks.status_code == 200
    assert [key["kty"] for key in jwks.json()["keys"]] == ["RSA"]
    me = platform.shop.call("GET", "user", "/users/me", platform.shop.customer())
    assert me.status_code == 200, me.text


def test_each_client_behind_the_gateway_counts_as_itself(platform: Platform) -> None:
    """The login rate limit counts per client address: the services must take it from
    the gateway's X-Forwarded-For (not nginx's own address, which all requests share)
    and must not believe what a client writes there."""

    def client_at(address: str) -> httpx.Client:
        transport = httpx.HTTPTransport(local_address=address)
        return httpx.Client(base_url=platform.gateway.url, transport=transport, timeout=30)

    def login(http: httpx.Client, spoofed: str) -> httpx.Response:
        return http.post(
            "/api/v1/auth/login",
            json={"email": f"nobody-{uuid.uuid4().hex[:8]}@example.com", "password": "x" * 12},
            headers={"X-Forwarded-For": spoofed},
        )

    with client_at("127.0.0.2") as first, client_at("127.0.0.3") as second:
        answers = [login(first, f"198.51.100.{n}").status_code for n in range(LOGINS_PER_MINUTE)]
        assert answers == [401] * LOGINS_PER_MINUTE
        # A new forged address each time did not make a new client.
        limited = login(first, "198.51.100.200")
        assert limited.status_code == 429, limited.text
        assert limited.headers["content-type"].startswith("application/problem+json")
        assert int(limited.headers["retry-after"]) >= 1
        # Another machine behind the same gateway is not limited.
        assert login(second, "198.51.100.1").status_code == 401


@pytest.mark.parametrize("service", SERVICES)
def test_each_services_docs_work_through_the_gateway(platform: Platform, service: str) -> None:
    http, url = platform.shop.http, platform.gateway.url
    docs = http.get(f"{url}/services/{service}/docs")
    assert docs.status_code == 200
    assert f"url: '/services/{service}/openapi.json'" in docs.text
    schema = http.get(f"{url}/services/{service}/openapi.json").json()
    assert service in schema["info"]["title"].lower()
    ready = http.get(f"{url}/services/{service}/readyz")
    assert ready.status_code == 200, ready.text
