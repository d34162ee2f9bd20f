"""Liveness (/healthz) depends on nothing; readiness (/readyz) names what is not ready."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import event

from meshmart_common import health
from meshmart_common.db import Database
from meshmart_common.health import Readiness
from meshmart_common.testing import assert_problem


def count_checkouts(database: Database) -> list[int]:
    """A one-item list counting connections taken from ``database``'s pool."""
    counter = [0]

    def on_checkout(*_args: Any) -> None:
        counter[0] += 1

    event.listen(database.engine.sync_engine, "checkout", on_checkout)
    return counter


async def test_healthz_answers_without_touching_the_database(
    app: FastAPI, client: AsyncClient
) -> None:
    checkouts = count_checkouts(app.state.database)
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "service": "widgets"}
    assert checkouts == [0]
    await client.get("/readyz")
    assert checkouts[0] >= 1


async def test_healthz_stays_up_when_readiness_fails(app: FastAPI, client: AsyncClient) -> None:
    async def broken() -> None:
        raise ConnectionError("down")

    app.state.readiness.add("database", broken)
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 503


async def test_readyz_reports_the_database_ok(client: AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok"}}


async def test_readyz_is_503_naming_a_failing_check(app: FastAPI, client: AsyncClient) -> None:
    async def bus_down() -> None:
        raise ConnectionRefusedError("bus is away")

    app.state.readiness.add("bus", bus_down)
    response = await client.get("/readyz")
    body = assert_problem(response, 503)
    assert body["type"] == "https://meshmart.dev/problems/not-ready"
    assert body["checks"] == {"database": "ok", "bus": "failing: ConnectionRefusedError"}
    assert body["failing"] == ["bus"]
    assert body["detail"] == "Not ready: bus (failing: ConnectionRefusedError)"
    assert body["instance"] == "/readyz"


async def test_readyz_is_503_when_a_check_times_out(
    app: FastAPI, client: AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "CHECK_TIMEOUT_SECONDS", 0.05)

    async def registry_hangs() -> None:
        await asyncio.sleep(10)

    async def database_answers() -> None:
        return None

    # Only the registry may miss the short deadline, however loaded the machine.
    app.state.readiness.add("database", database_answers)
    app.state.readiness.add("registry", registry_hangs)
    response = await client.get("/readyz")
    body = assert_problem(response, 503)
    assert body["checks"]["registry"] == "timeout"
    assert body["failing"] == ["registry"]


async def test_readyz_is_503_when_the_database_is_unreachable(
    app: FastAPI, client: AsyncClient
) -> None:
    # Nothing listens on port 1: connecting fails at once.
    unreachable = Database("mysql+aiomysql://nobody@127.0.0.1:1/none")
    try:
        app.state.readiness.add("database", unreachable.ping)
        response = await client.get("/readyz")
    finally:
        await unreachable.dispose()
    body = assert_problem(response, 503)
    assert body["failing"] == ["database"]
    assert body["checks"]["database"].startswith("failing: ")


async def test_readiness_runs_checks_concurrently() -> None:
    readiness = Readiness()
    started: list[str] = []

    def slow(name: str) -> Any:
        async def check() -> None:
            started.append(name)
            await asyncio.sleep(0.2)

        return check

    for name in ("a", "b", "c"):
        readiness.add(name, slow(name))
    loop = asyncio.get_running_loop()
    begin = loop.time()
    assert await readiness.run() == {"a": "ok", "b": "ok", "c": "ok"}
    assert loop.time() - begin < 0.5
    assert sorted(started) == ["a", "b", "c"]
