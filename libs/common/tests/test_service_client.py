"""Service-to-service calls: caller propagation, deadlines and how failures become problems."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from pydantic import BaseModel

from meshmart_common.errors import DomainError, ServiceUnavailable, install_error_handlers
from meshmart_common.service_client import (
    BadGateway,
    Caller,
    GatewayTimeout,
    ServiceClient,
    ServiceResponse,
    UpstreamError,
    UpstreamUnavailable,
)
from meshmart_common.testing import assert_problem, free_port

BASE = "http://product.test"
Handler = Callable[[httpx.Request], Coroutine[None, None, httpx.Response]]


class Product(BaseModel):
    """What the tests read from the fake product service."""

    id: int
    title: str
    price_cents: int


def product_client(handler: Handler, *, timeout: float = 2.0) -> ServiceClient:
    transport = httpx.MockTransport(handler)
    return ServiceClient(
        "product", BASE, timeout=timeout, client=httpx.AsyncClient(transport=transport)
    )


def answering(status: int, body: Any = None, *, content: bytes | None = None) -> Handler:
    async def handler(request: httpx.Request) -> httpx.Response:
        if content is not None:
            return httpx.Response(status, content=content)
        return httpx.Response(status, json=body)

    return handler


def raising(exc: Exception) -> Handler:
    async def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


# --- what is sent -------------------------------------------------------------


async def test_get_passes_on_the_callers_token_and_request_id() -> None:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": 7, "title": "Lamp", "price_cents": 1999})

    client = product_client(handler)
    response = await client.get(
        "/api/v1/products/7",
        caller=Caller(token="tok-123", request_id="req-9"),
        params={"expand": "stock"},
    )

    assert response.ok
    assert response.status_code == 200
    assert response.parse(Product) == Product(id=7, title="Lamp", price_cents=1999)
    [request] = seen
    assert request.method == "GET"
    assert str(request.url) == "http://product.test/api/v1/products/7?expand=stock"
    assert request.headers["authorization"] == "Bearer tok-123"
    assert request.headers["x-request-id"] == "req-9"
    assert request.headers["accept"] == "application/json"


async def test_post_sends_a_json_body_and_no_credentials_without_a_caller() -> None:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"total_cents": 900})

    client = ServiceClient(
        "trade",
        "http://trade.test/",
        client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
    )
    response = await client.post("/api/v1/quotes", json={"subtotal_cents": 1000})

    assert response.status_code == 201
    assert response.body == {"total_cents": 900}
    [request] = seen
    assert str(request.url) == "http://trade.test/api/v1/quotes"
    assert json.loads(request.content) == {"subtotal_cents": 1000}
    assert "authorization" not in request.headers
    assert "x-request-id" not in request.headers


def test_caller_of_a_request_takes_the_verified_token_and_the_request_id() -> None:
    class FakePrincipal:
        token = "verified-token"

    request = Request({"type": "http", "method": "GET", "path": "/", "headers": []})
    request.state.principal = FakePrincipal()
    request.state.request_id = "req-42"
    caller = Caller.of_request(request)
    assert caller == Caller(token="verified-token", request_id="req-42")
    assert caller.headers() == {"Authorization": "Bearer verified-token", "X-Request-ID": "req-42"}
    assert "verified-token" not in repr(caller)


def test_caller_of_an_anonymous_request_carries_no_token() -> None:
    request = Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/",
            # An unverified header is never passed on.
            "headers": [(b"authorization", b"Bearer forged")],
        }
    )
    assert Caller.of_request(request) == Caller(token=None, request_id=None)
    assert Caller().headers() == {}


# --- answers the caller decides on --------------------------------------------


async def test_not_found_is_returned_for_the_caller_to_decide() -> None:
    client = product_client(
        answering(404, {"type": "x", "title": "Not found", "status": 404, "detail": "No 7."})
    )
    response = await client.get("/api/v1/products/7")
    assert response.not_found
    assert not response.ok
    assert response.problem_detail() == "No 7."
    with pytest.raises(BadGateway) as caught:
        response.parse(Product)
    assert caught.value.status == 502
    assert "unexpected 404" in caught.value.detail


async def test_validation_errors_are_returned_with_their_field_errors() -> None:
    problem = {
        "type": "https://meshmart.dev/problems/validation-failed",
        "title": "Validation failed",
        "status": 422,
        "detail": "The coupon cannot be used.",
        "errors": [
            {"field": "coupon_code", "message": "expired", "location": "body", "type": "expired"},
            {"field": 3, "message": "not a field name"},
            "not an object",
            {"field": "points_to_redeem"},
        ],
    }
    client = product_client(answering(422, problem))
    response = await client.post("/api/v1/quotes", json={})
    assert response.status_code == 422
    assert response.field_errors() == [
        {"field": "coupon_code", "message": "expired", "location": "body", "type": "expired"},
        {"field": "points_to_redeem", "message": "is invalid"},
    ]
    assert response.problem_detail() == "The coupon cannot be used."


async def test_a_4xx_without_a_json_body_is_still_returned() -> None:
    client = product_client(answering(400, content=b"<html>bad request</html>"))
    response = await client.get("/api/v1/products/7")
    assert response.status_code == 400
    assert response.body is None
    assert response.field_errors() == []
    assert response.problem_detail() is None


async def test_an_empty_2xx_body_is_none() -> None:
    client = product_client(answering(204, content=b""))
    response = await client.post("/api/v1/things")
    assert response.status_code == 204
    assert response.body is None


# --- failures ------------------------------------------------------------------


async def test_connection_refused_is_service_unavailable() -> None:
    # A real socket nobody listens on, not a mock.
    client = ServiceClient("product", f"http://127.0.0.1:{free_port()}", timeout=2.0)
    async with client:
        started = time.monotonic()
        with pytest.raises(UpstreamUnavailable) as caught:
            await client.get("/api/v1/products/1")
    assert time.monotonic() - started < 2.0
    error = caught.value
    assert isinstance(error, ServiceUnavailable)
    assert isinstance(error, UpstreamError)
    assert (error.status, error.code, error.service) == (503, "service-unavailable", "product")
    assert error.detail == "product is unavailable."


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("no route"),
        httpx.PoolTimeout("pool is full"),
        httpx.UnsupportedProtocol("ftp"),
    ],
    ids=["connect-error", "connect-timeout", "pool-timeout", "unsupported-protocol"],
)
async def test_a_call_that_never_reached_the_service_is_unavailable(exc: Exception) -> None:
    client = product_client(raising(exc))
    with pytest.raises(UpstreamUnavailable) as caught:
        await client.get("/api/v1/products/1")
    assert caught.value.status == 503
    assert caught.value.detail == "product is unavailable."


@pytest.mark.parametrize(
    "exc",
    [httpx.ReadTimeout("slow"), httpx.WriteTimeout("slow")],
    ids=["read-timeout", "write-timeout"],
)
async def test_an_httpx_timeout_after_connecting_is_a_gateway_timeout(exc: Exception) -> None:
    client = product_client(raising(exc))
    with pytest.raises(GatewayTimeout) as caught:
        await client.get("/api/v1/products/1")
    assert (caught.value.status, caught.value.code) == (504, "gateway-timeout")
    assert caught.value.detail == "product did not answer within 2 s."


async def test_the_per_call_deadline_bounds_the_whole_call() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json={})

    client = product_client(slow, timeout=10)
    started = time.monotonic()
    with pytest.raises(GatewayTimeout) as caught:
        await client.get("/api/v1/products/1", timeout=0.2)
    elapsed = time.monotonic() - started
    assert 0.15 < elapsed < 2.0
    assert caught.value.detail == "product did not answer within 0.2 s."


async def test_the_client_default_deadline_applies_when_the_call_sets_none() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json={})

    client = product_client(slow, timeout=0.1)
    with pytest.raises(GatewayTimeout):
        await client.get("/api/v1/products/1")


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_a_5xx_answer_is_a_bad_gateway(status: int) -> None:
    client = product_client(answering(status, {"detail": "database exploded"}))
    with pytest.raises(BadGateway) as caught:
        await client.get("/api/v1/products/1")
    assert caught.value.status == 502
    assert caught.value.detail == (
        f"product failed to answer GET /api/v1/products/1 (status {status})."
    )
    # The other service's internals are not passed on.
    assert "exploded" not in caught.value.detail


async def test_a_redirect_is_not_followed_but_is_a_bad_gateway() -> None:
    async def redirect(request: httpx.Request) -> httpx.Response:
        return httpx.Response(307, headers={"Location": "http://elsewhere.test/"})

    client = product_client(redirect)
    with pytest.raises(BadGateway):
        await client.get("/api/v1/products/1")


@pytest.mark.parametrize(
    "content", [b"<html>oops</html>", b'{"id": 1', b"\xff\xfe"], ids=["html", "cut", "binary"]
)
async def test_a_2xx_body_that_is_not_json_is_a_bad_gateway(content: bytes) -> None:
    client = product_client(answering(200, content=content))
    with pytest.raises(BadGateway) as caught:
        await client.get("/api/v1/products/1")
    assert caught.value.detail == "product sent an answer that cannot be read."


@pytest.mark.parametrize(
    "body",
    [
        [1, 2],
        {"id": 1, "title": "Lamp"},
        {"id": "one", "title": "Lamp", "price_cents": 5},
        None,
    ],
    ids=["list", "missing-field", "wrong-type", "null"],
)
async def test_a_2xx_body_of_the_wrong_shape_is_a_bad_gateway(body: Any) -> None:
    client = product_client(answering(200, body))
    response = await client.get("/api/v1/products/1")
    with pytest.raises(BadGateway) as caught:
        response.parse(Product)
    assert caught.value.detail == "product sent an answer that cannot be read."


async def test_a_broken_connection_is_a_bad_gateway() -> None:
    client = product_client(raising(httpx.RemoteProtocolError("peer closed")))
    with pytest.raises(BadGateway) as caught:
        await client.get("/api/v1/products/1")
    assert caught.value.detail == "product broke off the call before answering."


# --- rendering and lifecycle ---------------------------------------------------------


async def test_failures_render_as_problem_json_in_the_calling_service() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json={})

    outcomes: dict[str, Handler] = {
        "down": raising(httpx.ConnectError("refused")),
        "slow": slow,
        "broken": answering(500, {}),
    }
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/call/{outcome}")
    async def call(outcome: str) -> dict[str, Any]:
        client = product_client(outcomes[outcome], timeout=0.1)
        response = await client.get("/api/v1/products/1")
        return {"status": response.status_code}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://caller.test") as http:
        down = assert_problem(await http.get("/call/down"), 503)
        slow_body = assert_problem(await http.get("/call/slow"), 504)
        broken = assert_problem(await http.get("/call/broken"), 502)
    assert down["detail"] == "product is unavailable."
    assert down["type"] == "https://meshmart.dev/problems/service-unavailable"
    assert slow_body["type"] == "https://meshmart.dev/problems/gateway-timeout"
    assert slow_body["title"] == "Gateway timeout"
    assert broken["type"] == "https://meshmart.dev/problems/bad-gateway"
    assert broken["title"] == "Bad gateway"


async def test_an_injected_http_client_is_left_open_and_an_own_one_is_closed() -> None:
    shared = httpx.AsyncClient(transport=httpx.MockTransport(answering(200, {})))
    async with ServiceClient("product", BASE, client=shared) as client:
        await client.get("/api/v1/products/1")
    assert not shared.is_closed
    await shared.aclose()

    own = ServiceClient("product", BASE)
    await own.aclose()
    assert own._client.is_closed


@pytest.mark.parametrize(
    ("base_url", "timeout"),
    [("product.test", 1.0), ("ftp://product.test", 1.0), (BASE, 0), (BASE, -1)],
)
def test_a_misconfigured_client_fails_at_construction(base_url: str, timeout: float) -> None:
    with pytest.raises(ValueError, match=r"base URL|timeout"):
        ServiceClient("product", base_url, timeout=timeout)


async def test_a_path_must_be_absolute_and_a_deadline_positive() -> None:
    client = product_client(answering(200, {}))
    with pytest.raises(ValueError, match="path"):
        await client.get("api/v1/products/1")
    with pytest.raises(ValueError, match="timeout"):
        await client.get("/api/v1/products/1", timeout=0)


def test_every_upstream_error_is_a_domain_error_naming_its_service() -> None:
    errors: list[UpstreamError] = [
        UpstreamUnavailable("x", service="trade"),
        GatewayTimeout("x", service="trade"),
        BadGateway("x", service="trade"),
    ]
    assert [(e.status, e.service) for e in errors] == [
        (503, "trade"),
        (504, "trade"),
        (502, "trade"),
    ]
    assert all(isinstance(e, DomainError) for e in errors)


def test_a_response_is_a_plain_value() -> None:
    response = ServiceResponse(
        service="product", method="GET", path="/p", status_code=200, body={"a": 1}
    )
    assert response.ok
    assert not response.not_found
    assert response.unexpected().detail == "product answered GET /p with an unexpected 200."
