"""Registration and discovery against the Consul agent double (tests/consul_double.py).

The double runs the registered HTTP checks for real, so the instances here are
real HTTP servers: tiny aiohttp apps whose /readyz answer a test can change,
and, for the lifespan, the FastAPI app itself served by uvicorn. Every wait
polls with a generous deadline; nothing asserts how fast it happened.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from aiohttp import web
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from meshmart_common.app import create_app
from meshmart_common.discovery import (
    ConsulRegistration,
    ConsulResolver,
    StaticResolver,
    registration_payload,
)
from meshmart_common.messaging.testing import eventually
from meshmart_common.settings import Environment, ServiceSettings
from meshmart_common.testing import free_port
from tests.consul_double import ConsulDouble

DEADLINE = 30.0


def settings_of(name: str, port: int, double: ConsulDouble, **overrides: Any) -> ServiceSettings:
    values: dict[str, Any] = {
        "service_name": name,
        "service_version": "0.1.0",
        "environment": Environment.TEST,
        "host": "127.0.0.1",
        "port": port,
        "database_url": "sqlite+aiosqlite:///:memory:",
        "advertise_address": "",
        "discovery_backend": "consul",
        "consul_http_addr": double.url,
        "consul_token": "",
        "consul_check_interval_seconds": 1,
        "consul_check_timeout_seconds": 1,
        "consul_deregister_after_seconds": 600,
        "consul_wait_seconds": 2,
        "load_balancer": "round_robin",
    }
    values.update(overrides)
    return ServiceSettings(**values)


def condition(test: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return test()

    return probe


@dataclass
class FakeInstance:
    """A real HTTP server whose /readyz answers ``status``."""

    port: int
    status: int = 200


@asynccontextmanager
async def fake_instance() -> AsyncIterator[FakeInstance]:
    instance = FakeInstance(port=0)

    async def readyz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ready"}, status=instance.status)

    app = web.Application()
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    instance.port = runner.addresses[0][1]
    try:
        yield instance
    finally:
        await runner.cleanup()


@asynccontextmanager
async def served(app: FastAPI, port: int) -> AsyncIterator[uvicorn.Server]:
    """``app`` served by uvicorn on 127.0.0.1:``port``, lifespan included."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await eventually(condition(lambda: server.started or task.done()), within=DEADLINE)
        assert server.started, "uvicorn did not start"
        yield server
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=DEADLINE)


def order_app(settings: ServiceSettings, static_urls: dict[str, str] | None = None) -> FastAPI:
    return create_app(
        settings,
        title="order (consul test)",
        description="Calls product.",
        # Static URLs matter to the static backend only; consul finds product itself.
        upstreams=static_urls or {"product": "http://127.0.0.1:9"},
    )


async def test_the_service_registers_on_start_and_deregisters_on_exit(
    consul_double: ConsulDouble, tmp_path: Path
) -> None:
    port = free_port()
    settings = settings_of("order", port, consul_double, var_dir=tmp_path, database_url="")
    instance_id = f"order-127.0.0.1-{port}"
    app = order_app(settings)

    async with served(app, port):
        await eventually(
            condition(lambda: instance_id in consul_double.services()),
            within=DEADLINE,
            what="the registration",
        )
        [body] = consul_double.received_registrations
        assert body == registration_payload(settings, "127.0.0.1")
        service = consul_double.services()[instance_id]
        assert (service["Service"], service["Address"], service["Port"]) == (
            "order",
            "127.0.0.1",
            port,
        )
        assert service["Tags"] == ["v0.1.0", "test"]
        assert service["Meta"] == {"version": "0.1.0", "environment": "test"}
        assert consul_double.deregister_critical_after(instance_id) == 600

        # Consul's check calls the app's real /readyz, and it passes even though
        # the registry has nothing to offer for "product" yet.
        await eventually(
            condition(lambda: consul_double.check_status(instance_id) == "passing"),
            within=DEADLINE,
            what="a passing check",
        )

    assert consul_double.deregistered == [instance_id]
    assert instance_id not in consul_double.services()


async def test_the_resolver_follows_the_passing_instances_and_survives_an_outage(
    consul_double: ConsulDouble,
) -> None:
    async with fake_instance() as first, fake_instance() as second:
        registrations = [
            ConsulRegistration(settings_of("product", instance.port, consul_double))
            for instance in (first, second)
        ]
        for registration in registrations:
            await registration.register()
        first_id, second_id = (r.service_id for r in registrations)
        resolver = ConsulResolver(
            settings_of("order", 8003, consul_double), ["product"], first_answer_timeout=5
        )
        await resolver.start()
        try:

            def instance_ids() -> list[str]:
                return [e.instance_id for e in resolver.endpoints("product")]

            # Both checks pass: both instances appear, as Consul reports them.
            await eventually(
                condition(lambda: instance_ids() == sorted([first_id, second_id])),
                within=DEADLINE,
                what="two passing instances",
            )
            assert {(e.address, e.port) for e in resolver.endpoints("product")} == {
                ("127.0.0.1", first.port),
                ("127.0.0.1", second.port),
            }
            assert resolver.degraded() is None

            # The second one's /readyz fails: its check goes critical, it is dropped.
            second.status = 503
            await eventually(
                condition(lambda: instance_ids() == [first_id]),
                within=DEADLINE,
                what="the critical instance to be dropped",
            )
            assert consul_double.check_status(second_id) == "critical"

            # Consul goes away: the last list stays, and the resolver says so.
            consul_double.stop()
            await eventually(
                condition(lambda: resolver.degraded() is not None),
                within=DEADLINE,
                what="the resolver to notice the outage",
            )
            reason = resolver.degraded()
            assert reason is not None
            assert reason.startswith("consul unreachable since ")
            assert reason.endswith("using 1 cached instances of product")
            assert instance_ids() == [first_id]

            # Consul is back, and so is the second instance.
            second.status = 200
            consul_double.start()
            await eventually(
                condition(lambda: resolver.degraded() is None),
                within=DEADLINE,
                what="the resolver to recover",
            )
            await eventually(
                condition(lambda: instance_ids() == sorted([first_id, second_id])),
                within=DEADLINE,
                what="the recovered instance",
            )
        finally:
            await resolver.aclose()
            for registration in registrations:
                await registration.stop()
    assert sorted(consul_double.deregistered) == sorted([first_id, second_id])


async def test_the_readiness_check_reports_the_outage_as_degraded(
    consul_double: ConsulDouble, tmp_path: Path
) -> None:
    settings = settings_of("order", 8003, consul_double, var_dir=tmp_path, database_url="")
    app = order_app(settings)
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager:
        transport = ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://testserver") as client:
            await asyncio.wait_for(app.state.registration.wait_registered(), timeout=DEADLINE)
            ready = await client.get("/readyz")
            assert ready.json() == {
                "status": "ready",
                "checks": {"database": "ok", "registry": "ok"},
            }

            consul_double.stop()
            await eventually(
                condition(lambda: app.state.resolver.degraded() is not None),
                within=DEADLINE,
                what="the outage",
            )
            degraded = await client.get("/readyz")
            assert degraded.status_code == 200
            body = degraded.json()
            assert body["status"] == "degraded"
            assert body["checks"]["registry"].startswith("degraded: consul unreachable since ")
            assert body["checks"]["registry"].endswith("using 0 cached instances of product")
            consul_double.start()


async def test_with_the_static_backend_nothing_reaches_consul(
    consul_double: ConsulDouble, tmp_path: Path
) -> None:
    port = free_port()
    settings = settings_of(
        "order", port, consul_double, var_dir=tmp_path, database_url="", discovery_backend="static"
    )
    app = order_app(settings, static_urls={"product": "http://127.0.0.1:8002"})
    async with served(app, port):
        assert isinstance(app.state.resolver, StaticResolver)
        assert [e.base_url for e in app.state.resolver.endpoints("product")] == [
            "http://127.0.0.1:8002"
        ]
        async with AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            response = await client.get("/readyz")
        assert response.json() == {"status": "ready", "checks": {"database": "ok"}}
    assert consul_double.requests() == []
    assert consul_double.received_registrations == []
