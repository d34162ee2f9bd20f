"""Service-to-service calls: caller propagation, deadlines and how failures become problems."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Coroutine, Sequence
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from meshmart_common.discovery import Balancer, Endpoint, StaticResolver
from meshmart_common.errors import DomainError, ServiceUnavailable, install_error_handlers
from meshmart_common.messaging.backoff import Backoff
from meshmart_common.resilience import Breakers, RetryBudget
from meshmart_common.service_client import (
    BadGateway,
    Caller,
    GatewayTimeout,
    ServiceClient,
    ServiceResponse,
    UpstreamError,
    UpstreamMetrics,
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


# --- discovery, retries and circuit breaking -------------------------------------------

FAST = Backoff(base=timedelta(milliseconds=1), cap=timedelta(milliseconds=2))


class Instances:
    """A resolver whose instances of ``product`` the test sets."""

    def __init__(self, *hosts: str) -> None:
        self.hosts = list(hosts)

    def endpoints(self, service: str) -> Sequence[Endpoint]:
        return [Endpoint(service, host, f"{host}.test", 80) for host in self.hosts]

    def degraded(self) -> str | None:
        return None

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class RecordingBalancer:
    """Always the first endpoint (so attempts go in order); records what it is told."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def choose(self, endpoints: Sequence[Endpoint]) -> Endpoint:
        self.events.append("choose " + ",".join(e.instance_id for e in endpoints))
        return endpoints[0]

    def started(self, endpoint: Endpoint) -> None:
        self.events.append(f"started {endpoint.instance_id}")

    def finished(self, endpoint: Endpoint) -> None:
        self.events.append(f"finished {endpoint.instance_id}")


class Fleet:
    """Instances of product behind one mock transport, each with its own behaviour."""

    def __init__(self, **behaviours: Handler) -> None:
        self.behaviours = behaviours
        self.seen: list[httpx.Request] = []

    def by_instance(self) -> list[str]:
        return [request.url.host.removesuffix(".test") for request in self.seen]

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        return await self.behaviours[request.url.host.removesuffix(".test")](request)

    def client(
        self,
        *,
        timeout: float = 2.0,
        retries: int = 2,
        breakers: Breakers | None = None,
        retry_budget: RetryBudget | None = None,
        balancer: Balancer | None = None,
        resolver: Instances | None = None,
    ) -> ServiceClient:
        return ServiceClient(
            "product",
            resolver=resolver or Instances(*self.behaviours),
            balancer=balancer,
            timeout=timeout,
            retries=retries,
            breakers=breakers,
            retry_budget=retry_budget,
            backoff=FAST,
            client=httpx.AsyncClient(transport=httpx.MockTransport(self.handle)),
        )


OK = answering(200, {"id": 1, "title": "Lamp", "price_cents": 100})
REFUSED = raising(httpx.ConnectError("connection refused"))


async def test_calls_are_spread_round_robin_over_the_instances() -> None:
    fleet = Fleet(a=OK, b=OK)
    client = fleet.client()
    for _ in range(4):
        await client.get("/api/v1/products/1")
    assert fleet.by_instance() == ["a", "b", "a", "b"]
    assert str(fleet.seen[0].url) == "http://a.test/api/v1/products/1"


@pytest.mark.parametrize("failure", [answering(503, {}), REFUSED], ids=["503", "refused"])
async def test_a_get_that_fails_is_retried_on_the_next_instance(failure: Handler) -> None:
    fleet = Fleet(a=failure, b=OK)
    client = fleet.client()
    response = await client.get("/api/v1/products/1", caller=Caller(token="t", request_id="r"))
    assert response.parse(Product).title == "Lamp"
    assert fleet.by_instance() == ["a", "b"]


async def test_the_callers_token_and_request_id_reach_every_attempt() -> None:
    fleet = Fleet(a=answering(502, {}), b=raising(httpx.ReadError("reset")), c=OK)
    client = fleet.client(balancer=RecordingBalancer())
    await client.get("/api/v1/products/1", caller=Caller(token="tok-1", request_id="req-1"))
    assert fleet.by_instance() == ["a", "b", "c"]
    assert [r.headers["authorization"] for r in fleet.seen] == ["Bearer tok-1"] * 3
    assert [r.headers["x-request-id"] for r in fleet.seen] == ["req-1"] * 3


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (answering(500, {}), BadGateway),
        (raising(httpx.ReadTimeout("slow")), GatewayTimeout),
        (raising(httpx.RemoteProtocolError("peer closed")), BadGateway),
    ],
    ids=["500", "read-timeout", "broken"],
)
async def test_a_post_that_may_have_been_processed_is_not_retried(
    failure: Handler, error: type[UpstreamError]
) -> None:
    fleet = Fleet(a=failure, b=OK)
    client = fleet.client()
    with pytest.raises(error):
        await client.post("/api/v1/orders", json={"x": 1})
    assert fleet.by_instance() == ["a"]


async def test_a_post_that_never_left_is_retried_on_another_instance() -> None:
    fleet = Fleet(a=REFUSED, b=answering(201, {"id": 9}))
    client = fleet.client()
    response = await client.post("/api/v1/orders", json={"x": 1})
    assert response.body == {"id": 9}
    assert fleet.by_instance() == ["a", "b"]
    assert [json.loads(r.content) for r in fleet.seen] == [{"x": 1}, {"x": 1}]


async def test_a_post_marked_idempotent_is_retried_like_a_get() -> None:
    fleet = Fleet(a=answering(500, {}), b=raising(httpx.ReadTimeout("slow")), c=OK)
    client = fleet.client(balancer=RecordingBalancer())
    response = await client.post("/api/v1/quotes", json={"subtotal_cents": 1}, idempotent=True)
    assert response.ok
    assert fleet.by_instance() == ["a", "b", "c"]


async def test_retries_stop_at_the_configured_number_with_the_last_error() -> None:
    fleet = Fleet(a=answering(503, {}), b=answering(503, {}), c=answering(503, {}), d=OK)
    client = fleet.client(retries=2, balancer=RecordingBalancer())
    with pytest.raises(BadGateway, match=r"status 503"):
        await client.get("/api/v1/products/1")
    assert fleet.by_instance() == ["a", "b", "c"]


async def test_a_single_instance_is_tried_again_when_there_is_no_other() -> None:
    calls = 0

    async def flaky(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503 if calls == 1 else 200, json={})

    fleet = Fleet(only=flaky)
    response = await fleet.client().get("/api/v1/products/1")
    assert response.ok
    assert fleet.by_instance() == ["only", "only"]


async def test_a_spent_retry_budget_stops_retries() -> None:
    fleet = Fleet(a=answering(503, {}), b=OK)
    budget = RetryBudget(ratio=0, min_retries_per_second=0.1, window_seconds=10, clock=Clock())
    client = fleet.client(retry_budget=budget)

    # The floor (0.1/s over 10 s) pays for one retry, then no more.
    assert (await client.get("/api/v1/products/1")).ok
    with pytest.raises(BadGateway):
        await client.get("/api/v1/products/1")
    assert fleet.by_instance() == ["a", "b", "a"]


async def test_no_instance_at_all_is_service_unavailable() -> None:
    fleet = Fleet(a=OK)
    client = fleet.client(resolver=Instances())
    with pytest.raises(UpstreamUnavailable) as caught:
        await client.get("/api/v1/products/1")
    assert caught.value.status == 503
    assert caught.value.detail == "no healthy instance of product."
    assert fleet.seen == []


async def test_an_instance_whose_breaker_opened_is_skipped_until_its_cooldown_ends() -> None:
    clock = Clock()
    breakers = Breakers(failure_threshold=2, cooldown_seconds=5, clock=clock)
    fleet = Fleet(a=REFUSED, b=OK)
    client = fleet.client(breakers=breakers, balancer=RecordingBalancer())

    for _ in range(2):
        assert (await client.get("/api/v1/products/1")).ok
    assert client.breaker_states() == {"a": "open", "b": "closed"}
    fleet.seen.clear()
    for _ in range(3):
        assert (await client.get("/api/v1/products/1")).ok
    assert fleet.by_instance() == ["b", "b", "b"]

    # After the cool-down one probe goes to a; it is back, so its breaker closes.
    clock.now += 5
    fleet.behaviours["a"] = OK
    fleet.seen.clear()
    assert client.breaker_states()["a"] == "half_open"
    await client.get("/api/v1/products/1")
    assert fleet.by_instance() == ["a"]
    assert client.breaker_states() == {"a": "closed", "b": "closed"}


async def test_when_every_breaker_is_open_the_call_fails_at_once_without_sending() -> None:
    clock = Clock()
    breakers = Breakers(failure_threshold=1, cooldown_seconds=5, clock=clock)
    fleet = Fleet(a=answering(500, {}), b=answering(500, {}))
    client = fleet.client(breakers=breakers)
    with pytest.raises(BadGateway):
        await client.get("/api/v1/products/1")
    assert client.breaker_states() == {"a": "open", "b": "open"}
    fleet.seen.clear()

    with pytest.raises(UpstreamUnavailable) as caught:
        await client.get("/api/v1/products/1")
    assert caught.value.status == 503
    assert caught.value.detail == "product is unavailable (circuit open)."
    assert fleet.seen == []


async def test_a_4xx_answer_counts_as_a_success_for_the_breaker() -> None:
    breakers = Breakers(failure_threshold=2, clock=Clock())
    fleet = Fleet(a=answering(404, {}))
    client = fleet.client(breakers=breakers)
    for _ in range(5):
        assert (await client.get("/api/v1/products/1")).not_found
    assert client.breaker_states() == {"a": "closed"}
    assert breakers.get("a").consecutive_failures == 0


async def test_the_balancer_learns_when_each_attempt_starts_and_ends() -> None:
    balancer = RecordingBalancer()
    fleet = Fleet(a=REFUSED, b=OK)
    client = fleet.client(balancer=balancer)
    await client.get("/api/v1/products/1")
    assert balancer.events == [
        "choose a,b",
        "started a",
        "finished a",
        "choose b",
        "started b",
        "finished b",
    ]


async def test_the_deadline_covers_every_attempt() -> None:
    async def failing_slowly(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.1)
        return httpx.Response(503, json={})

    async def hanging(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(10)
        return httpx.Response(200, json={})

    breakers = Breakers(failure_threshold=1, clock=Clock())
    balancer = RecordingBalancer()
    fleet = Fleet(a=failing_slowly, b=hanging)
    client = fleet.client(timeout=0.4, breakers=breakers, balancer=balancer)
    started = time.monotonic()
    with pytest.raises(GatewayTimeout) as caught:
        await client.get("/api/v1/products/1")
    assert time.monotonic() - started < 2.0
    assert caught.value.detail == "product did not answer within 0.4 s."
    assert fleet.by_instance() == ["a", "b"]
    # The instance that let the deadline pass counts as failed; it is not left in flight.
    assert client.breaker_states() == {"a": "open", "b": "open"}
    assert balancer.events[-1] == "finished b"


async def test_a_retry_is_not_started_when_the_deadline_leaves_no_time_for_it() -> None:
    async def failing_slowly(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.2)
        return httpx.Response(503, json={})

    fleet = Fleet(a=failing_slowly, b=OK)
    client = ServiceClient(
        "product",
        resolver=Instances("a", "b"),
        timeout=0.3,
        backoff=Backoff(base=timedelta(seconds=0.5), cap=timedelta(seconds=0.5)),
        client=httpx.AsyncClient(transport=httpx.MockTransport(fleet.handle)),
    )
    with pytest.raises(BadGateway, match="status 503"):
        await client.get("/api/v1/products/1")
    assert fleet.by_instance() == ["a"]


async def test_a_cancelled_call_leaves_no_probe_behind() -> None:
    clock = Clock()
    breakers = Breakers(failure_threshold=1, cooldown_seconds=5, clock=clock)
    entered = asyncio.Event()

    async def hanging(request: httpx.Request) -> httpx.Response:
        entered.set()
        await asyncio.sleep(10)
        return httpx.Response(200, json={})

    fleet = Fleet(a=answering(500, {}))
    client = fleet.client(breakers=breakers, retries=0)
    with pytest.raises(BadGateway):
        await client.get("/api/v1/products/1")
    clock.now += 5
    fleet.behaviours["a"] = hanging
    probe = asyncio.create_task(client.get("/api/v1/products/1"))
    await entered.wait()
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    # The caller went away: nothing was learnt, and the next call may probe.
    assert client.breaker_states() == {"a": "half_open"}
    fleet.behaviours["a"] = OK
    assert (await client.get("/api/v1/products/1")).ok
    assert client.breaker_states() == {"a": "closed"}


def test_a_client_needs_exactly_one_of_a_base_url_and_a_resolver() -> None:
    with pytest.raises(ValueError, match="either a base URL or a resolver"):
        ServiceClient("product")
    with pytest.raises(ValueError, match="either a base URL or a resolver"):
        ServiceClient("product", BASE, resolver=StaticResolver({"product": BASE}))
    with pytest.raises(ValueError, match="retries"):
        ServiceClient("product", BASE, retries=-1)


def test_a_client_at_a_base_url_resolves_it_statically() -> None:
    client = ServiceClient("product", BASE + "/")
    assert client.base_url == BASE
    assert [e.base_url for e in client.resolver.endpoints("product")] == ["http://product.test:80"]


async def test_metrics_count_each_attempt_by_instance_and_show_the_breakers() -> None:
    registry = CollectorRegistry()
    metrics = UpstreamMetrics(registry)
    fleet = Fleet(a=REFUSED, b=answering(503, {}), c=OK)
    client = ServiceClient(
        "product",
        resolver=Instances("a", "b", "c"),
        balancer=RecordingBalancer(),
        breakers=Breakers(failure_threshold=1),
        backoff=FAST,
        client=httpx.AsyncClient(transport=httpx.MockTransport(fleet.handle)),
        metrics=metrics,
    )
    await client.get("/api/v1/products/1")

    def attempts(instance: str, outcome: str) -> float | None:
        labels = {"upstream": "product", "instance": instance, "outcome": outcome}
        return registry.get_sample_value("upstream_requests_total", labels)

    assert (attempts("a", "not_sent"), attempts("b", "server_error"), attempts("c", "ok")) == (
        1.0,
        1.0,
        1.0,
    )

    def state(instance: str) -> float | None:
        labels = {"upstream": "product", "instance": instance}
        return registry.get_sample_value("upstream_circuit_state", labels)

    assert (state("a"), state("b"), state("c")) == (2.0, 2.0, 0.0)
