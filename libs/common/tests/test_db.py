"""The request's session commits on success and rolls back on error; engines and naming."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import Column, Integer, MetaData, Table, insert, inspect, select, text
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Connection

from meshmart_common.db import (
    NAMING_CONVENTION,
    Database,
    UTCDateTime,
    create_engine,
    naming_metadata,
)
from meshmart_common.errors import Conflict
from meshmart_common.testing import assert_problem, create_schema


async def widget_names(database_url: str) -> list[str]:
    """The widget names in the database, read through a connection of its own."""
    database = Database(database_url)
    try:
        async with database.session(read_only=True) as session:
            rows = await session.execute(text("SELECT name FROM widgets ORDER BY id"))
            return [row[0] for row in rows]
    finally:
        await database.dispose()


async def test_successful_request_commits(client: AsyncClient, database_url: str) -> None:
    response = await client.post("/api/v1/widgets", json={"name": "gear"})
    assert response.status_code == 201
    created = response.json()
    assert created["name"] == "gear"
    assert await widget_names(database_url) == ["gear"]
    fetched = await client.get(f"/api/v1/widgets/{created['id']}")
    assert fetched.json() == created


async def test_domain_error_after_a_write_rolls_it_back(
    client: AsyncClient, database_url: str
) -> None:
    response = await client.post("/api/v1/widgets/write-then-fail", json={"name": "ghost"})
    assert_problem(response, 409)
    assert await widget_names(database_url) == []


async def test_domain_error_that_commits_the_session_keeps_the_write(
    client: AsyncClient, database_url: str
) -> None:
    response = await client.post(
        "/api/v1/widgets/write-then-fail?keep=true", json={"name": "on-record"}
    )
    body = assert_problem(response, 409)
    assert body["detail"] == "Refused, but the attempt is on record."
    assert await widget_names(database_url) == ["on-record"]


async def test_crash_after_a_write_rolls_it_back(client: AsyncClient, database_url: str) -> None:
    response = await client.post(
        "/api/v1/widgets/write-then-fail?crash=true", json={"name": "ghost"}
    )
    assert_problem(response, 500)
    assert await widget_names(database_url) == []
    # The failed request left the pool healthy: the next one writes fine.
    assert (await client.post("/api/v1/widgets", json={"name": "after"})).status_code == 201
    assert await widget_names(database_url) == ["after"]


async def test_commit_happens_before_the_response_is_sent(
    client: AsyncClient, database_url: str
) -> None:
    # The INSERT of this route runs only at commit time; a duplicate name makes
    # the commit fail, and the client must hear about it instead of a 201.
    first = await client.post("/api/v1/widgets/unflushed", json={"name": "twin"})
    assert first.status_code == 201
    second = await client.post("/api/v1/widgets/unflushed", json={"name": "twin"})
    body = assert_problem(second, 500)
    assert body["type"] == "https://meshmart.dev/problems/internal-error"
    assert await widget_names(database_url) == ["twin"]


async def test_unicode_survives_the_round_trip(client: AsyncClient, database_url: str) -> None:
    name = "Zahnrad ⚙️ 齿轮 — ünïcode"
    created = await client.post("/api/v1/widgets", json={"name": name})
    assert created.json()["name"] == name
    assert await widget_names(database_url) == [name]


async def test_unit_of_work_commits_and_rolls_back(database_url: str) -> None:
    database = Database(database_url)
    try:
        async with database.session() as session:
            await session.execute(text("INSERT INTO widgets (name) VALUES ('kept')"))
        try:
            async with database.session() as session:
                await session.execute(text("INSERT INTO widgets (name) VALUES ('dropped')"))
                raise LookupError("abandon")
        except LookupError:
            pass
    finally:
        await database.dispose()
    assert await widget_names(database_url) == ["kept"]


class KeptRefusal(Conflict):
    """A refusal whose work before it is kept."""

    commit_session = True


async def insert_then_fail(
    database: Database, name: str, error: Exception, *, read_only: bool = False
) -> None:
    """Insert a widget in a unit of work, then raise ``error`` inside it."""
    async with database.session(read_only=read_only) as session:
        await session.execute(text("INSERT INTO widgets (name) VALUES (:name)"), {"name": name})
        raise error


async def test_unit_of_work_commits_before_an_error_that_keeps_the_session(
    database_url: str,
) -> None:
    database = Database(database_url)
    try:
        with pytest.raises(KeptRefusal):
            await insert_then_fail(database, "kept", KeptRefusal("refused"))
        with pytest.raises(Conflict):
            await insert_then_fail(database, "dropped", Conflict("refused"))
        with pytest.raises(KeptRefusal):
            await insert_then_fail(database, "read-only", KeptRefusal("refused"), read_only=True)
    finally:
        await database.dispose()
    assert await widget_names(database_url) == ["kept"]


async def test_read_only_session_never_commits(database_url: str) -> None:
    database = Database(database_url)
    try:
        async with database.session(read_only=True) as session:
            await session.execute(text("INSERT INTO widgets (name) VALUES ('nope')"))
    finally:
        await database.dispose()
    assert await widget_names(database_url) == []


async def test_read_sessions_use_the_replica_engine(
    database_url: str, service_metadata: MetaData, tmp_path: Path
) -> None:
    replica_url = f"sqlite+aiosqlite:///{tmp_path / 'replica.db'}"
    create_schema(replica_url, service_metadata)
    database = Database(database_url, read_url=replica_url)
    try:
        assert database.read_engine is not database.engine
        assert database.read_engine.url.database == str(tmp_path / "replica.db")
        async with database.read_sessionmaker() as session:
            await session.execute(text("INSERT INTO widgets (name) VALUES ('on-replica')"))
            await session.commit()
        async with database.session() as session:
            await session.execute(text("INSERT INTO widgets (name) VALUES ('on-primary')"))
        async with database.session(read_only=True) as session:
            replica_rows = (await session.execute(text("SELECT name FROM widgets"))).all()
        async with database.session() as session:
            primary_rows = (await session.execute(text("SELECT name FROM widgets"))).all()
    finally:
        await database.dispose()
    assert [r[0] for r in replica_rows] == ["on-replica"]
    assert [r[0] for r in primary_rows] == ["on-primary"]


async def test_without_replica_reads_use_the_primary(database_url: str) -> None:
    database = Database(database_url)
    try:
        assert database.read_engine is database.engine
    finally:
        await database.dispose()


async def test_app_reads_list_endpoints_from_the_replica(
    database_url: str,
    service_metadata: MetaData,
    tmp_path: Path,
    make_app: Callable[..., FastAPI],
) -> None:
    replica_url = f"sqlite+aiosqlite:///{tmp_path / 'replica.db'}"
    create_schema(replica_url, service_metadata)
    app = make_app(database_url=database_url, database_read_url=replica_url)
    async with (
        LifespanManager(app) as manager,
        AsyncClient(transport=ASGITransport(app=manager.app), base_url="http://t") as client,
    ):
        created = await client.post("/api/v1/widgets", json={"name": "fresh"})
        assert created.status_code == 201
        listed = await client.get("/api/v1/widgets")
    # The write went to the primary; the (not yet replicated) replica is empty.
    assert listed.json()["total"] == 0
    assert await widget_names(database_url) == ["fresh"]


async def test_naming_convention_names_the_constraints(database_url: str) -> None:
    found: dict[str, Any] = {}

    def read_constraints(conn: Connection) -> None:
        inspector = inspect(conn)
        found["unique"] = inspector.get_unique_constraints("widgets")
        found["primary"] = inspector.get_pk_constraint("widgets")

    database = Database(database_url)
    try:
        await database.run_sync(read_constraints)
    finally:
        await database.dispose()
    assert [(c["name"], c["column_names"]) for c in found["unique"]] == [
        ("uq_widgets_name", ["name"])
    ]
    if database.dialect == "sqlite":
        # MySQL always calls its primary key PRIMARY; SQLite keeps the given name.
        assert found["primary"]["name"] == "pk_widgets"


def test_naming_metadata_uses_the_shared_convention() -> None:
    metadata = naming_metadata()
    assert metadata.naming_convention == NAMING_CONVENTION
    assert naming_metadata() is not metadata


async def test_sqlite_engine_creates_the_folder_and_sets_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "x.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.connect() as conn:
            pragmas = {
                name: (await conn.execute(text(f"PRAGMA {name}"))).scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout")
            }
    finally:
        await engine.dispose()
    assert path.parent.is_dir()
    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 10000}


async def test_database_reports_its_dialect_and_runs_sync_code(database_url: str) -> None:
    database = Database(database_url)
    seen: list[list[str]] = []

    def tables(conn: Connection) -> None:
        seen.append(inspect(conn).get_table_names())

    try:
        await database.ping()
        await database.run_sync(tables)
    finally:
        await database.dispose()
    assert database.dialect == ("sqlite" if database_url.startswith("sqlite") else "mysql")
    assert seen == [["widgets"]]


def test_utc_datetime_keeps_microseconds_on_mysql_unless_told_otherwise() -> None:
    assert str(UTCDateTime().compile(dialect=mysql.dialect())) == "DATETIME(6)"
    assert str(UTCDateTime(precision=0).compile(dialect=mysql.dialect())) == "DATETIME"
    assert str(UTCDateTime().compile(dialect=sqlite.dialect())) == "DATETIME"


async def test_utc_datetime_reads_back_the_same_instant_in_utc(empty_database_url: str) -> None:
    metadata = MetaData()
    moments = Table(
        "moments",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("at", UTCDateTime()),
        Column("at_seconds", UTCDateTime(precision=0)),
    )
    create_schema(empty_database_url, metadata)
    berlin = timezone(timedelta(hours=2))
    written = datetime(2026, 3, 10, 14, 30, 15, 123456, tzinfo=berlin)
    database = Database(empty_database_url)
    try:
        async with database.session() as session:
            await session.execute(insert(moments).values(id=1, at=written, at_seconds=written))
        async with database.session(read_only=True) as session:
            row = (await session.execute(select(moments.c.at, moments.c.at_seconds))).one()
            raw = await session.scalar(text("SELECT at FROM moments"))
    finally:
        await database.dispose()
    at, at_seconds = row
    assert at == written
    assert at.tzinfo is UTC
    assert at.microsecond == 123456
    assert at_seconds.tzinfo is UTC
    assert at_seconds.replace(microsecond=0) == written.replace(microsecond=0)
    # Stored as the UTC wall time, without an offset.
    assert str(raw).startswith("2026-03-10 12:30:15")
