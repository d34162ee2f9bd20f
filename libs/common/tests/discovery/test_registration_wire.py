"""What ConsulRegistration really sends, seen by a small recording HTTP server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web

from meshmart_common.discovery.registration import ConsulRegistration, registration_payload
from meshmart_common.messaging.backoff import Backoff
from meshmart_common.messaging.testing import eventually
from meshmart_common.settings import Environment, ServiceSettings

FAST_BACKOFF = Backoff(timedelta(milliseconds=5), timedelta(milliseconds=20))


@dataclass
class RecordingAgent:
    """Answers the two agent endpoints; fails or hangs on demand."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    fail_next: int = 0
    hang: bool = False

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "token": request.headers.get("X-Consul-Token"),
                "body": await request.text(),
            }
        )
        if self.hang:
            await asyncio.sleep(3600)
        if self.fail_next:
            self.fail_next -= 1
            return web.Response(status=500, text="No cluster leader")
        return web.Response(status=200, text="")


@pytest.fixture
async def agent() -> AsyncIterator[RecordingAgent]:
    recorder = RecordingAgent()
    app = web.Application()
    app.router.add_route("PUT", "/v1/agent/service/register", recorder.handle)
    app.router.add_route("PUT", "/v1/agent/service/deregister/{id}", recorder.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    recorder.url = f"http://{host}:{port}"
    try:
        yield recorder
    finally:
        await runner.cleanup()


def settings_for(agent: RecordingAgent, **overrides: Any) -> ServiceSettings:
    values: dict[str, Any] = {
        "service_name": "product",
        "service_version": "0.1.0",
        "environment": Environment.TEST,
        "host": "127.0.0.1",
        "port": 8002,
        "database_url": "sqlite+aiosqlite:///:memory:",
        "advertise_address": "",
        "consul_http_addr": agent.url,
        "consul_token": "",
        "consul_check_interval_seconds": 10,
        "consul_check_timeout_seconds": 2,
        "consul_deregister_after_seconds": 60,
    }
    values.update(overrides)
    return ServiceSettings(**values)


async def test_register_sends_the_documented_object_once(agent: RecordingAgent) -> None:
    settings = settings_for(agent, consul_token="acl-token")
    registration = ConsulRegistration(settings)
    try:
        await registration.register()
    finally:
        await registration.stop()
    register, deregister = agent.requests
    assert register["method"] == "PUT"
    assert register["path"] == "/v1/agent/service/register"
    assert register["query"] == {"replace-existing-checks": "true"}
    assert register["token"] == "acl-token"
    body = json.loads(register["body"])
    assert body == registration_payload(settings, "127.0.0.1")
    # Not py-consul's lower-case form, and one Check object rather than a list.
    assert {"name", "id", "checks", "check"}.isdisjoint(body)
    assert body["Check"]["HTTP"] == "http://127.0.0.1:8002/readyz"
    assert body["Check"]["DeregisterCriticalServiceAfter"] == "1m"
    assert deregister["path"] == "/v1/agent/service/deregister/product-127.0.0.1-8002"
    assert deregister["token"] == "acl-token"


async def test_start_keeps_trying_until_the_agent_accepts(agent: RecordingAgent) -> None:
    agent.fail_next = 2
    registration = ConsulRegistration(settings_for(agent), backoff=FAST_BACKOFF)
    try:
        await registration.start()
        await asyncio.wait_for(registration.wait_registered(), timeout=15)
        assert registration.registered
        assert registration.degraded() is None
        assert [r["path"] for r in agent.requests] == ["/v1/agent/service/register"] * 3
    finally:
        await registration.stop()
    assert agent.requests[-1]["path"] == "/v1/agent/service/deregister/product-127.0.0.1-8002"


async def test_while_the_agent_refuses_the_registration_is_reported_degraded(
    agent: RecordingAgent,
) -> None:
    agent.fail_next = 1_000_000
    registration = ConsulRegistration(settings_for(agent), backoff=FAST_BACKOFF)
    try:
        await registration.start()

        async def refused_twice() -> bool:
            return len(agent.requests) >= 2

        await eventually(refused_twice, what="two refused attempts")
        reason = registration.degraded()
        assert reason == "not registered with consul yet (ConsulException); retrying"
        assert not registration.registered
    finally:
        await registration.stop()


async def test_deregister_is_bounded_and_never_raises(agent: RecordingAgent) -> None:
    registration = ConsulRegistration(settings_for(agent))
    await registration.register()
    agent.hang = True
    try:
        assert await asyncio.wait_for(registration.deregister(timeout=0.2), timeout=15) is False
    finally:
        agent.hang = False
        await registration.stop()


async def test_nothing_is_deregistered_when_nothing_was_registered(
    agent: RecordingAgent,
) -> None:
    registration = ConsulRegistration(settings_for(agent))
    await registration.stop()
    assert await registration.deregister() is False
    assert agent.requests == []
