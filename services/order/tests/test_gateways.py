"""How answers of product and trade are read (and when they are not trusted)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from meshmart_common.errors import ValidationFailed
from meshmart_common.service_client import BadGateway, Caller, ServiceClient
from order_service.domain.ports import ProductSnapshot, Quote, QuoteRequest
from order_service.gateways.product import ProductGateway
from order_service.gateways.trade import TradeGateway

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
