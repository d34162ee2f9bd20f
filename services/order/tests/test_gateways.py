"""How answers of product and trade are read (and when they are not trusted)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from httpx import AsyncClient

from meshmart_common.discovery import Endpoint, Resolver, StaticResolver
from meshmart_common.errors import ValidationFailed
from meshmart_common.service_client import BadGateway, Caller, ServiceClient
from meshmart_common.testing import assert_problem
from order_service.components import Components
from order_service.domain.ports import ProductSnapshot, Quote, QuoteRequest
from order_service.gateways.product import ProductGateway
from order_service.gateways.trade import TradeGateway
from order_service.gateways.upstreams import Upstreams
from order_service.settings import Settings
from services.order.tests.shop import Shop
from services.order.tests.stubs import Mode, Outage, ProductStub, TradeStub

CALLER = Caller(token="tok", request_id="req-1")


def client(name: str, answer: Callable[[httpx.Request], httpx.Response]) -> ServiceClient:
    async def handler(request: httpx.Request) -> httpx.Response:
        return answer(request)

    transport = httpx.MockTransport(handler)
    return ServiceClient(name, f"http://{name}.test", client=httpx.AsyncClient(transport=transport))


def product_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": 5,
        "sku": "SKU-5",
        "title": "Lamp",
        "price_cents": 1999,
        "currency": "USD",
        "stock": {"on_hand": 4, "reserved": 1, "available": 3},
        "deleted": False,
        "something_new": {"ignored": True},
    }
    body.update(overrides)
    return body


async def test_a_product_is_read_from_its_product_read() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=product_body())

    found = await ProductGateway(client("product", answer), CALLER).find(5)

    assert found == ProductSnapshot(
        product_id=5, title="Lamp", price_cents=1999, currency="USD", available=3, deleted=False
    )
    assert seen[0].url.path == "/api/v1/products/5"
    assert seen[0].headers["authorization"] == "Bearer tok"
    assert seen[0].headers["x-request-id"] == "req-1"


async def test_an_unknown_product_is_none() -> None:
    gateway = ProductGateway(client("product", lambda r: httpx.Response(404, json={})), CALLER)
    assert await gateway.find(5) is None


@pytest.mark.parametrize(
    "body",
    [
        product_body(id=6),
        product_body(price_cents=-1),
        product_body(price_cents=19.99),
        product_body(title=""),
        product_body(title="x" * 201),
        {"id": 5},
    ],
    ids=["other-id", "negative-price", "fractional-price", "no-title", "long-title", "partial"],
)
async def test_a_product_answer_that_cannot_be_trusted_is_a_bad_gateway(
    body: dict[str, Any],
) -> None:
    gateway = ProductGateway(client("product", lambda r: httpx.Response(200, json=body)), CALLER)
    with pytest.raises(BadGateway):
        await gateway.find(5)


async def test_a_product_answer_other_than_200_or_404_is_a_bad_gateway() -> None:
    gateway = ProductGateway(client("product", lambda r: httpx.Response(401, json={})), CALLER)
    with pytest.raises(BadGateway, match="unexpected 401"):
        await gateway.find(5)


def quote_answer(**overrides: Any) -> Callable[[httpx.Request], httpx.Response]:
    def answer(request: httpx.Request) -> httpx.Response:
        asked = json.loads(request.content)
        body = {
            "subtotal_cents": asked["subtotal_cents"],
            "coupon_code": asked["coupon_code"],
            "discount_cents": 100,
            "points_to_redeem": asked["points_to_redeem"],
            "points_discount_cents": 50,
            "total_cents": asked["subtotal_cents"] - 150,
        }
        body.update(overrides)
        return httpx.Response(200, json=body)

    return answer


async def test_a_quote_is_asked_for_with_the_subtotal_coupon_and_points() -> None:
    gateway = TradeGateway(client("trade", quote_answer()), CALLER)
    quote = await gateway.quote(
        QuoteRequest(subtotal_cents=1000, coupon_code="SAVE", points_to_redeem=50)
    )
    assert quote == Quote(
        subtotal_cents=1000,
        coupon_code="SAVE",
        discount_cents=100,
        points_to_redeem=50,
        points_discount_cents=50,
        total_cents=850,
    )


async def test_trade_may_spell_the_coupon_its_own_way() -> None:
    gateway = TradeGateway(client("trade", quote_answer(coupon_code="SAVE")), CALLER)
    quote = await gateway.quote(
        QuoteRequest(subtotal_cents=1000, coupon_code="save", points_to_redeem=50)
    )
    assert quote.coupon_code == "SAVE"


@pytest.mark.parametrize(
    "overrides",
    [
        {"subtotal_cents": 999},
        {"points_to_redeem": 0},
        {"coupon_code": "OTHER"},
        {"coupon_code": None},
        {"total_cents": 851},
        {"discount_cents": -100, "total_cents": 1050},
    ],
    ids=["subtotal", "points", "other-coupon", "dropped-coupon", "total", "negative"],
)
async def test_a_quote_that_does_not_answer_the_question_is_a_bad_gateway(
    overrides: dict[str, Any],
) -> None:
    gateway = TradeGateway(client("trade", quote_answer(**overrides)), CALLER)
    with pytest.raises(BadGateway):
        await gateway.quote(
            QuoteRequest(subtotal_cents=1000, coupon_code="SAVE", points_to_redeem=50)
        )


async def test_a_refused_quote_is_a_validation_error_with_trades_fields() -> None:
    problem = {
        "detail": "The coupon has expired.",
        "errors": [{"field": "coupon_code", "message": "expired", "type": "expired"}],
    }
    gateway = TradeGateway(client("trade", lambda r: httpx.Response(422, json=problem)), CALLER)
    with pytest.raises(ValidationFailed) as caught:
        await gateway.quote(QuoteRequest(subtotal_cents=1, coupon_code="OLD", points_to_redeem=0))
    assert caught.value.detail == "The coupon has expired."
    assert caught.value.errors == [
        {"field": "coupon_code", "message": "expired", "type": "expired"}
    ]


async def test_a_refused_quote_without_details_still_says_why() -> None:
    gateway = TradeGateway(client("trade", lambda r: httpx.Response(422, text="no")), CALLER)
    with pytest.raises(ValidationFailed) as caught:
        await gateway.quote(QuoteRequest(subtotal_cents=1, coupon_code="OLD", points_to_redeem=0))
    assert caught.value.detail == "The coupon or the points cannot be used."
    assert caught.value.errors is None


# --- resilience: the clients as the app builds them -----------------------------------

CART = "/api/v1/cart"
ORDERS = "/api/v1/orders"
STATIC_PRODUCT_URL = "http://static-product.test"


class MonotonicClock:
    """The breakers' and budgets' clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Instances:
    """A registry's answer: the healthy instances of each service, set by the test."""

    def __init__(self, **hosts: list[str]) -> None:
        self.hosts = hosts

    def endpoints(self, service: str) -> Sequence[Endpoint]:
        return [Endpoint(service, host, f"{host}.test", 80) for host in self.hosts[service]]

    def degraded(self) -> str | None:
        return None

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class BrokenConnection(httpx.AsyncBaseTransport):
    """An instance that dies with the request in flight (it may have been processed)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("peer closed connection", request=request)


class Counting(httpx.AsyncBaseTransport):
    """Counts the attempts that reach one instance, whatever it does with them."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.attempts = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.attempts += 1
        return await self.inner.handle_async_request(request)


@dataclass
class Discovered:
    """The app's upstreams rebuilt on a resolver, with one transport per instance."""

    components: Components
    instances: dict[str, Counting]
    clock: MonotonicClock
    http: httpx.AsyncClient

    def use(self, resolver: Resolver) -> Upstreams:
        upstreams = Upstreams.from_resolver(
            resolver, self.components.settings, self.http, clock=self.clock
        )
        self.components.upstreams = upstreams
        return upstreams


@pytest.fixture
async def discovered(
    api: AsyncClient, components: Components, product_service: ProductStub, trade_service: TradeStub
) -> AsyncIterator[Discovered]:
    """Two product and two trade instances (sharing the stubs' state, like replicas share a
    database), each behind its own Outage; ``use(resolver)`` makes the app call them."""
    instances = {
        "product-1": Counting(Outage(product_service.app)),
        "product-2": Counting(Outage(product_service.app)),
        "trade-1": Counting(Outage(trade_service.app)),
        "trade-2": Counting(Outage(trade_service.app)),
        "static-product": Counting(product_service.transport),
        "static-trade": Counting(trade_service.transport),
    }
    http = httpx.AsyncClient(
        mounts={f"http://{name}.test": transport for name, transport in instances.items()}
    )
    yield Discovered(components, instances, MonotonicClock(), http)
    await http.aclose()


def outage(instance: Counting) -> Outage:
    assert isinstance(instance.inner, Outage)
    return instance.inner


async def test_reads_and_checkouts_are_spread_and_survive_losing_a_product_instance(
    discovered: Discovered, api: AsyncClient, shop: Shop, customer_headers: dict[str, str]
) -> None:
    upstreams = discovered.use(Instances(product=["product-1", "product-2"], trade=["trade-1"]))
    product_1, product_2 = discovered.instances["product-1"], discovered.instances["product-2"]

    for _ in range(3):
        await shop.order(customer_headers, (1000, 1))
    assert product_1.attempts > 0
    assert product_2.attempts > 0

    outage(product_2).mode = Mode.DOWN
    before = product_2.attempts
    for _ in range(8):
        await shop.order(customer_headers, (1000, 1))
        cart = (await api.get(CART, headers=customer_headers)).json()
        assert cart["stale"] is False

    # Its breaker opened after BREAKER_FAILURE_THRESHOLD refused attempts; since then
    # nothing goes to it (until the cool-down lets one probe through).
    threshold = discovered.components.settings.breaker_failure_threshold
    assert product_2.attempts - before == threshold
    assert upstreams.breaker_states()["product"] == {"product-1": "closed", "product-2": "open"}


async def test_a_quote_is_asked_again_of_another_trade_instance_when_one_breaks_off(
    discovered: Discovered, shop: Shop, customer_headers: dict[str, str], trade_service: TradeStub
) -> None:
    discovered.instances["trade-1"].inner = BrokenConnection()
    discovered.use(Instances(product=["product-1"], trade=["trade-1", "trade-2"]))

    order = await shop.order(customer_headers, (1000, 1), coupon_code="SAVE10")

    assert order["total_cents"] == 900
    assert discovered.instances["trade-1"].attempts == 1
    assert discovered.instances["trade-2"].attempts == 1
    assert len(trade_service.seen) == 1


async def test_with_product_stopped_the_cart_is_stale_checkout_503_and_both_recover(
    discovered: Discovered,
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    product_service: ProductStub,
) -> None:
    # The static default: one fixed URL per service (as from PRODUCT_URL and TRADE_URL).
    upstreams = discovered.use(
        StaticResolver({"product": STATIC_PRODUCT_URL, "trade": "http://static-trade.test"})
    )
    lamp = shop.product(1500, title="Lamp")
    await shop.put(customer_headers, lamp.id, 1)
    product_service.mode = Mode.DOWN

    cart = await api.get(CART, headers=customer_headers)
    first = await api.post(ORDERS, json={}, headers=customer_headers)
    second = await api.post(ORDERS, json={}, headers=customer_headers)

    assert cart.status_code == 200
    assert cart.json()["stale"] is True
    assert cart.json()["items"][0]["title"] == "Lamp"
    assert assert_problem(first, 503)["detail"] == "product is unavailable."
    # The breaker is open now: checkout fails at once, without asking product.
    attempts = discovered.instances["static-product"].attempts
    assert assert_problem(second, 503)["detail"] == "product is unavailable (circuit open)."
    assert discovered.instances["static-product"].attempts == attempts
    assert upstreams.breaker_states()["product"] == {STATIC_PRODUCT_URL: "open"}

    # Product comes back; after the cool-down the next call probes and closes the breaker.
    product_service.mode = Mode.UP
    discovered.clock.now += discovered.components.settings.breaker_cooldown_seconds
    cart = await api.get(CART, headers=customer_headers)
    order = await api.post(ORDERS, json={}, headers=customer_headers)

    assert cart.json()["stale"] is False
    assert order.status_code == 201, order.text
    assert order.json()["total_cents"] == 1500
    assert upstreams.breaker_states()["product"] == {STATIC_PRODUCT_URL: "closed"}


def test_from_settings_calls_the_configured_urls_with_the_configured_resilience() -> None:
    settings = Settings(
        product_url="http://product.internal:8000/",
        trade_url="https://trade.internal",
        upstream_timeout_seconds=1.5,
        upstream_retries=4,
        breaker_failure_threshold=7,
        breaker_cooldown_seconds=9,
    )
    upstreams = Upstreams.from_settings(settings, httpx.AsyncClient())
    product, trade = upstreams.product, upstreams.trade
    assert [e.base_url for e in product.resolver.endpoints("product")] == [
        "http://product.internal:8000"
    ]
    assert [e.base_url for e in trade.resolver.endpoints("trade")] == ["https://trade.internal:443"]
    assert (product.timeout, product.retries) == (1.5, 4)
    assert (product.breakers.failure_threshold, product.breakers.cooldown_seconds) == (7, 9)
    assert product.retry_budget.ratio == settings.upstream_retry_budget_ratio
    assert product.breakers is not trade.breakers
