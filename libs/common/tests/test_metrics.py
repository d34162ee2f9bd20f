"""/metrics: RED metrics per route template, requests in flight, upstream calls and breakers."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from httpx import AsyncClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from meshmart_common.resilience import Breakers
from meshmart_common.service_client import ServiceClient, UpstreamError

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: AsyncClient) -> tuple[set[str], Samples]:
    """The metric family names of /metrics and every sample as {(name, labels): value}."""
    response = await client.get("/metrics")
    assert response.status_code == 200
    families = list(text_string_to_metric_families(response.text))
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in families
        for sample in family.samples
    }
    return {family.name for family in families}, samples


def labels(**values: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(values.items()))


def total(samples: Samples, name: str, **match: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``match``."""
    wanted = set(match.items())
    return sum(value for (n, lbls), value in samples.items() if n == name and wanted <= set(lbls))


async def test_after_a_known_number_of_requests_the_counters_show_exactly_that(
    client: AsyncClient,
) -> None:
    created = [
        (await client.post("/api/v1/widgets", json={"name": f"w{i}"})).json()["id"]
        for i in range(3)
    ]
    for widget_id in created:
        await client.get(f"/api/v1/widgets/{widget_id}")
    for missing in (900001, 900002):
        await client.get(f"/api/v1/widgets/{missing}")
    await client.get("/api/v1/errors/crash")

    _, samples = await scrape(client)
    requests = "http_requests_total"
    assert total(samples, requests, route="/api/v1/widgets", method="POST") == 3
    assert total(samples, requests, route="/api/v1/widgets/{widget_id}", status="200") == 3
    assert total(samples, requests, route="/api/v1/widgets/{widget_id}", status="404") == 2
    # The error rate is read off the status label: 5xx here.
    errors = sum(
        value
        for (name, lbls), value in samples.items()
        if name == requests and dict(lbls)["status"].startswith("5")
    )
    assert errors == 1
    # Every request so far (the scrape counts itself only once it has answered).
    assert total(samples, requests) == 9
    assert total(samples, "http_request_duration_seconds_count") == 9
    # In flight now: only the scrape itself.
    assert samples[("http_requests_in_progress", labels(method="GET"))] == 1
    assert samples[("http_requests_in_progress", labels(method="POST"))] == 0


async def test_a_request_in_flight_is_counted_while_it_runs(
    app: FastAPI, client: AsyncClient
) -> None:
    probe = APIRouter()

    @probe.put("/api/v1/in-flight")
    async def in_flight(request: Request) -> dict[str, float | None]:
        """How many PUTs are in flight, seen from inside one."""
        registry: CollectorRegistry = request.app.state.metrics.registry
        return {"put": registry.get_sample_value("http_requests_in_progress", {"method": "PUT"})}

    app.include_router(probe)
    assert (await client.put("/api/v1/in-flight")).json() == {"put": 1.0}
    _, samples = await scrape(client)
    assert samples[("http_requests_in_progress", labels(method="PUT"))] == 0
    assert samples[("http_requests_in_progress", labels(method="GET"))] == 1  # the scrape


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


async def test_upstream_calls_and_breaker_states_show_on_metrics(
    app: FastAPI, client: AsyncClient
) -> None:
    upstream = ServiceClient(
        "product",
        "http://product.test",
        retries=0,
        breakers=Breakers(failure_threshold=2),
        client=httpx.AsyncClient(transport=httpx.MockTransport(refused)),
        metrics=app.state.upstream_metrics,
    )
    try:
        _, before = await scrape(client)
        for _ in range(2):
            with pytest.raises(UpstreamError):
                await upstream.get("/api/v1/products/1")
        names, samples = await scrape(client)
    finally:
        await upstream.aclose()

    assert "upstream_requests" in names
    assert "upstream_circuit_state" in names
    assert total(before, "upstream_circuit_state") == 0
    assert total(samples, "upstream_requests_total", upstream="product", outcome="not_sent") == 2
    [(state_labels, state)] = [
        (dict(lbls), value)
        for (name, lbls), value in samples.items()
        if name == "upstream_circuit_state"
    ]
    assert state_labels["upstream"] == "product"
    assert state == 2  # open


async def test_metrics_lists_the_red_series_of_every_app(client: AsyncClient) -> None:
    await client.get("/healthz")
    names, _ = await scrape(client)
    assert {
        "http_requests",
        "http_request_duration_seconds",
        "http_requests_in_progress",
    } <= names
