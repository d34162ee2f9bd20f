"""A degraded check keeps /readyz at 200, so Consul's own check never deregisters on a blip."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from meshmart_common.health import Readiness
from meshmart_common.testing import assert_problem


@pytest.fixture
async def widgets(make_app: Callable[..., FastAPI]) -> AsyncIterator[tuple[FastAPI, AsyncClient]]:
    app = make_app()
    async with LifespanManager(app) as manager:
        transport = ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield app, client


async def test_a_degraded_check_answers_200_with_its_reason(
    widgets: tuple[FastAPI, AsyncClient],
) -> None:
    app, client = widgets

    async def registry() -> str | None:
        return "consul unreachable since 2025-01-01T00:00:00Z; using 2 cached instances of product"

    app.state.readiness.add("registry", registry)
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "degraded",
        "checks": {
            "database": "ok",
            "registry": "degraded: consul unreachable since 2025-01-01T00:00:00Z; "
            "using 2 cached instances of product",
        },
    }


async def test_a_check_returning_none_is_ok(widgets: tuple[FastAPI, AsyncClient]) -> None:
    app, client = widgets

    async def registry() -> str | None:
        return None

    app.state.readiness.add("registry", registry)
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "registry": "ok"}}


async def test_a_failing_check_still_makes_it_503_next_to_a_degraded_one(
    widgets: tuple[FastAPI, AsyncClient],
) -> None:
    app, client = widgets

    async def registry() -> str | None:
        return "consul unreachable"

    async def bus() -> None:
        raise ConnectionRefusedError("bus is away")

    app.state.readiness.add("registry", registry)
    app.state.readiness.add("bus", bus)
    body = assert_problem(await client.get("/readyz"), 503)
    assert body["failing"] == ["bus"]
    assert body["checks"] == {
        "database": "ok",
        "registry": "degraded: consul unreachable",
        "bus": "failing: ConnectionRefusedError",
    }
    assert body["detail"] == "Not ready: bus (failing: ConnectionRefusedError)"


async def test_the_report_sorts_checks_into_ok_degraded_and_failing() -> None:
    readiness = Readiness()

    async def ok() -> None:
        return None

    async def degraded() -> str:
        return "stale"

    async def broken() -> None:
        raise OSError("gone")

    readiness.add("database", ok)
    readiness.add("registry", degraded)
    readiness.add("bus", broken)
    report = await readiness.report()
    assert report.failing == ["bus"]
    assert report.degraded == ["registry"]
    assert report.status == "not-ready"
    assert await readiness.run() == {
        "database": "ok",
        "registry": "degraded: stale",
        "bus": "failing: OSError",
    }
