"""Request ids and Prometheus metrics labelled by route template."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi import APIRouter
from httpx import ASGITransport, AsyncClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import Message, Receive, Scope, Send

from meshmart_common.app import create_app
from meshmart_common.observability import UNMATCHED_ROUTE, HttpMetrics, RequestContextMiddleware
from meshmart_common.settings import ServiceSettings

HEX_ID = re.compile(r"^[0-9a-f]{32}$")


async def scrape(client: AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics as {(name, sorted labels): value}."""
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def labels(**values: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(values.items()))


async def test_requests_are_counted_by_route_template_not_raw_path(client: AsyncClient) -> None:
    created = await client.post("/api/v1/widgets", json={"name": "sprocket"})
    widget_id = created.json()["id"]
    assert (await client.get(f"/api/v1/widgets/{widget_id}")).status_code == 200
    assert (await client.get("/api/v1/widgets/987654321")).status_code == 404
    assert (await client.get("/api/v1/widgets/987654322")).status_code == 404

    samples = await scrape(client)
    template = "/api/v1/widgets/{widget_id}"
    total = "http_requests_total"
    assert samples[(total, labels(method="GET", route=template, status="200"))] == 1
    assert samples[(total, labels(method="GET", route=template, status="404"))] == 2
    assert samples[(total, labels(method="POST", route="/api/v1/widgets", status="201"))] == 1
    duration = "http_request_duration_seconds_count"
    assert samples[(duration, labels(method="GET", route=template))] == 3
    bucket = "http_request_duration_seconds_bucket"
    assert samples[(bucket, labels(method="GET", route=template, le="+Inf"))] == 3
    routes = {dict(key[1])["route"] for key in samples if key[0] == total}
    assert routes == {template, "/api/v1/widgets"}


async def test_nested_routers_are_labelled_with_their_full_template(tmp_path: Path) -> None:
    inner = APIRouter(prefix="/items")

    @inner.get("/{item_id}")
    async def get_item(item_id: int) -> dict[str, int]:
        """One item."""
        return {"id": item_id}

    shop = APIRouter()
    shop.include_router(inner, prefix="/shop")
    settings = ServiceSettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'n.db'}")
    app = create_app(settings, title="t", description="d", routers=[shop], root_routers=[inner])
    transport = ASGITransport(app=app)
    async with AsyncClient(transport=transport, base_url="http://testserver") as client:
        assert (await client.get("/api/v1/shop/items/5")).json() == {"id": 5}
        assert (await client.get("/api/v1/shop/items/6")).status_code == 200
        assert (await client.get("/items/7")).status_code == 200
        samples = await scrape(client)
    await app.state.database.dispose()
    total = "http_requests_total"
    assert (
        samples[(total, labels(method="GET", route="/api/v1/shop/items/{item_id}", status="200"))]
        == 2
    )
    assert samples[(total, labels(method="GET", route="/items/{item_id}", status="200"))] == 1


async def test_unmatched_paths_share_one_label(client: AsyncClient) -> None:
    for path in ("/nope", "/api/v1/nothing/1", "/api/v1/nothing/2"):
        assert (await client.get(path)).status_code == 404
    samples = await scrape(client)
    key = ("http_requests_total", labels(method="GET", route=UNMATCHED_ROUTE, status="404"))
    assert samples[key] == 3


async def test_unexpected_error_is_counted_as_500(client: AsyncClient) -> None:
    await client.get("/api/v1/errors/crash")
    samples = await scrape(client)
    key = ("http_requests_total", labels(method="GET", route="/api/v1/errors/crash", status="500"))
    assert samples[key] == 1


async def test_unknown_http_methods_share_one_label(client: AsyncClient) -> None:
    for method in ("FROBNICATE", "XYZZY", "BREW"):
        response = await client.request(method, "/api/v1/widgets")
        assert response.status_code == 405
    samples = await scrape(client)
    methods = {dict(key[1]).get("method") for key in samples if key[0] == "http_requests_total"}
    # The scrape counts itself only after it has answered.
    assert methods == {"OTHER"}


async def test_sane_request_id_is_echoed(client: AsyncClient) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "edge-7f3a.01:b_2"})
    assert response.headers["x-request-id"] == "edge-7f3a.01:b_2"


async def test_request_id_of_128_characters_is_echoed(client: AsyncClient) -> None:
    value = "a" * 128
    response = await client.get("/healthz", headers={"X-Request-ID": value})
    assert response.headers["x-request-id"] == value


@pytest.mark.parametrize(
    "value",
    ["has space", "semi;colon", "<script>", "a" * 129, ""],
    ids=["space", "semicolon", "markup", "too-long", "empty"],
)
async def test_insane_request_id_is_replaced(client: AsyncClient, value: str) -> None:
    response = await client.get("/api/v1/errors/not-found", headers={"X-Request-ID": value})
    request_id = response.headers["x-request-id"]
    assert HEX_ID.match(request_id)
    assert response.json()["request_id"] == request_id


async def test_missing_request_id_gets_a_fresh_one_per_request(client: AsyncClient) -> None:
    first = (await client.get("/healthz")).headers["x-request-id"]
    second = (await client.get("/healthz")).headers["x-request-id"]
    assert HEX_ID.match(first)
    assert HEX_ID.match(second)
    assert first != second


async def run_middleware(headers: list[tuple[bytes, bytes]]) -> tuple[str, list[Message]]:
    """Call the middleware around a tiny app; return the id it assigned and what it sent."""
    seen: dict[str, str] = {}

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen["request_id"] = scope["state"]["request_id"]
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    middleware = RequestContextMiddleware(inner, HttpMetrics(CollectorRegistry()))
    scope: Scope = {"type": "http", "method": "GET", "path": "/", "headers": headers}
    await middleware(scope, receive, send)
    return seen["request_id"], sent


async def test_request_id_with_a_trailing_newline_is_replaced() -> None:
    # "$" in a regex also matches before a final newline; echoing it would split headers.
    request_id, sent = await run_middleware([(b"x-request-id", b"abc\n")])
    assert HEX_ID.match(request_id)
    assert (b"x-request-id", request_id.encode()) in sent[0]["headers"]


async def test_middleware_passes_a_sane_id_to_the_app_and_the_response() -> None:
    request_id, sent = await run_middleware([(b"x-request-id", b"trace-1")])
    assert request_id == "trace-1"
    assert sent[0]["headers"] == [(b"x-request-id", b"trace-1")]
