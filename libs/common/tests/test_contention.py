"""A request that loses a lock race runs again instead of a 500; a 503 when it keeps losing."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
from fastapi import APIRouter, FastAPI, Request
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from meshmart_common.app import create_app
from meshmart_common.contention import is_lock_conflict
from meshmart_common.db import Database
from meshmart_common.errors import PROBLEM_JSON, PROBLEM_TYPE_BASE
from meshmart_common.settings import ServiceSettings


def deadlock() -> OperationalError:
    return OperationalError(
        "UPDATE t SET v = 1",
        {},
        pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock"),
    )


class Script:
    """What the probe route does on each attempt: raise the next error, or answer."""

    def __init__(self) -> None:
        self.errors: list[Exception] = []
        self.bodies: list[Any] = []
        self.request_ids: list[str] = []


probe = APIRouter()


@probe.post("/work")
async def work(request: Request) -> dict[str, Any]:
    """Reads the body, then fails as scripted."""
    script: Script = request.app.state.script
    script.bodies.append(await request.json())
    script.request_ids.append(request.state.request_id)
    if script.errors:
        raise script.errors.pop(0)
    return {"done": len(script.bodies)}


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    application = create_app(
        ServiceSettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'c.db'}"),
        title="contention",
        description="retry probe",
        routers=[probe],
    )
    application.state.script = Script()
    return application


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[AsyncClient]:
    transport = ASGITransport(app=app, raise_app_exceptions=False)
    async with AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def test_a_request_that_deadlocks_runs_again_with_its_body_and_request_id(
    app: FastAPI, http: AsyncClient
) -> None:
    script: Script = app.state.script
    script.errors = [deadlock(), deadlock()]
    response = await http.post("/api/v1/work", json={"sku": "A-1", "n": 3})
    assert response.status_code == 200
    assert response.json() == {"done": 3}
    assert script.bodies == [{"sku": "A-1", "n": 3}] * 3
    assert len(set(script.request_ids)) == 1
    assert response.headers["x-request-id"] == script.request_ids[0]
    metrics = (await http.get("/metrics")).text
    assert 'http_requests_total{method="POST",route="/api/v1/work",status="200"} 1.0' in metrics


async def test_a_request_that_keeps_losing_gets_503_problem_with_retry_after(
    app: FastAPI, http: AsyncClient
) -> None:
    script: Script = app.state.script
    script.errors = [deadlock() for _ in range(10)]
    response = await http.post("/api/v1/work", json={"n": 1})
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["retry-after"] == "1"
    body = response.json()
    assert body["type"] == PROBLEM_TYPE_BASE + "database-busy"
    assert body["request_id"] == response.headers["x-request-id"]
    assert len(script.bodies) == 4
    assert len(script.errors) == 6


@pytest.mark.parametrize(
    "error",
    [
        IntegrityError("INSERT", {}, pymysql.err.IntegrityError(1062, "Duplicate entry")),
        OperationalError("SELECT", {}, pymysql.err.OperationalError(2013, "Lost connection")),
        RuntimeError("a bug"),
    ],
    ids=["duplicate-key", "lost-connection", "bug"],
)
async def test_other_errors_are_not_run_again(
    app: FastAPI, http: AsyncClient, error: Exception
) -> None:
    script: Script = app.state.script
    script.errors = [error]
    response = await http.post("/api/v1/work", json={"n": 1})
    assert response.status_code == 500
    assert len(script.bodies) == 1


def test_a_real_sqlite_busy_error_is_a_lock_conflict(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    holder = sqlite3.connect(path, timeout=0, isolation_level=None)
    holder.execute("CREATE TABLE t (v INTEGER)")
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    with pytest.raises(sqlite3.OperationalError) as raised:
        other.execute("INSERT INTO t VALUES (2)")
    holder.rollback()
    holder.close()
    other.close()
    assert is_lock_conflict(DBAPIError("INSERT", {}, raised.value))
    assert not is_lock_conflict(
        DBAPIError("SELECT", {}, sqlite3.OperationalError("no such table: x"))
    )
    assert not is_lock_conflict(raised.value)  # not through SQLAlchemy: not ours to judge


async def test_a_real_deadlock_is_a_lock_conflict(empty_database_url: str) -> None:
    if not empty_database_url.startswith("mysql"):
        # SQLite has one writer at a time: two transactions cannot deadlock.
        assert empty_database_url.startswith("sqlite")
        return
    database = Database(empty_database_url)
    try:
        async with database.engine.begin() as conn:
            await conn.execute(text("CREATE TABLE pair (id INT PRIMARY KEY, v INT)"))
            await conn.execute(text("INSERT INTO pair VALUES (1, 0), (2, 0)"))
        first_locked, second_locked = asyncio.Event(), asyncio.Event()

        async def update(
            first: int, second: int, mine: asyncio.Event, theirs: asyncio.Event
        ) -> None:
            async with database.session() as session:
                await session.execute(text("UPDATE pair SET v = v + 1 WHERE id = :i"), {"i": first})
                mine.set()
                await theirs.wait()
                await session.execute(
                    text("UPDATE pair SET v = v + 1 WHERE id = :i"), {"i": second}
                )

        outcomes = await asyncio.gather(
            update(1, 2, first_locked, second_locked),
            update(2, 1, second_locked, first_locked),
            return_exceptions=True,
        )
        errors = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        assert len(errors) == 1, outcomes
        assert is_lock_conflict(errors[0])
    finally:
        await database.dispose()
