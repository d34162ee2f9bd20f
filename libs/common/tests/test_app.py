"""The app factory: routes in place, lifespan hooks in order, the database closed last."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from fastapi import APIRouter, FastAPI, Request
from httpx import ASGITransport, AsyncClient

from meshmart_common.app import API_PREFIX, LifespanHook, create_app, request_id
from meshmart_common.auth import JwksKeySource, StaticKeySource, TokenVerifier
from meshmart_common.db import Database
from meshmart_common.settings import ServiceSettings


def settings_for(tmp_path: Path, **values: Any) -> ServiceSettings:
    return ServiceSettings(
        service_name="probe", database_url=f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", **values
    )


def recording_hook(name: str, events: list[str], fail: bool = False) -> LifespanHook:
    @asynccontextmanager
    async def hook(app: FastAPI) -> AsyncIterator[None]:
        if fail:
            raise ConnectionError(f"{name} cannot start")
        events.append(f"{name} up")
        try:
            yield
        finally:
            events.append(f"{name} down")

    return hook


def record_dispose(database: Database, events: list[str]) -> None:
    original = database.dispose

    async def dispose() -> None:
        events.append("database closed")
        await original()

    database.dispose = dispose  # type: ignore[method-assign]


async def test_hooks_start_in_order_and_stop_in_reverse_before_the_database_closes(
    tmp_path: Path,
) -> None:
    events: list[str] = []
    app = create_app(
        settings_for(tmp_path),
        title="t",
        description="d",
        lifespan_hooks=[recording_hook("bus", events), recording_hook("registry", events)],
    )
    record_dispose(app.state.database, events)
    async with LifespanManager(app):
        assert events == ["bus up", "registry up"]
    assert events == ["bus up", "registry up", "registry down", "bus down", "database closed"]


async def test_failed_start_stops_the_started_hooks_and_closes_the_database(
    tmp_path: Path,
) -> None:
    events: list[str] = []
    app = create_app(
        settings_for(tmp_path),
        title="t",
        description="d",
        lifespan_hooks=[recording_hook("bus", events), recording_hook("registry", events, True)],
    )
    record_dispose(app.state.database, events)
    with pytest.raises(ConnectionError, match="registry cannot start"):
        async with LifespanManager(app):
            pass  # pragma: no cover - start-up fails
    assert events == ["bus up", "bus down", "database closed"]


async def test_routers_mount_under_api_v1_and_root_routers_at_the_root(tmp_path: Path) -> None:
    api = APIRouter()
    root = APIRouter()

    @api.get("/where")
    async def where_api(request: Request) -> dict[str, str]:
        """Answers under /api/v1."""
        return {"at": "api", "request_id": request_id(request)}

    @root.get("/.well-known/where")
    async def where_root() -> dict[str, str]:
        """Answers at the root."""
        return {"at": "root"}

    app = create_app(
        settings_for(tmp_path), title="t", description="d", routers=[api], root_routers=[root]
    )
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
        api_answer = await client.get(f"{API_PREFIX}/where", headers={"X-Request-ID": "r-9"})
        root_answer = await client.get("/.well-known/where")
        assert (await client.get("/where")).status_code == 404
        schema = (await client.get("/openapi.json")).json()
    await app.state.database.dispose()
    assert api_answer.json() == {"at": "api", "request_id": "r-9"}
    assert root_answer.json() == {"at": "root"}
    assert "/api/v1/where" in schema["paths"]
    assert "/.well-known/where" in schema["paths"]


async def test_app_state_is_built_from_the_settings(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, service_version="1.2.3", jwt_issuer="iss", jwt_audience="aud")
    app = create_app(settings, title="Probe", description="A probe.")
    try:
        assert app.title == "Probe"
        assert app.version == "1.2.3"
        assert app.state.settings is settings
        assert app.state.database.url == settings.database_url
        verifier = app.state.token_verifier
        assert isinstance(verifier, TokenVerifier)
        assert (verifier.issuer, verifier.audience) == ("iss", "aud")
        assert isinstance(verifier.keys, JwksKeySource)
        assert verifier.keys.url == settings.jwks_url
        assert set(app.state.readiness.checks) == {"database"}
    finally:
        await app.state.database.dispose()


async def test_a_given_key_source_replaces_the_jwks(tmp_path: Path) -> None:
    source = StaticKeySource({"keys": []})
    app = create_app(settings_for(tmp_path), title="t", description="d", key_source=source)
    try:
        assert app.state.token_verifier.keys is source
    finally:
        await app.state.database.dispose()


async def test_docs_are_served(client: AsyncClient) -> None:
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    schema = (await client.get("/openapi.json")).json()
    assert schema["info"]["title"] == "MeshMart widgets test service"
    assert schema["paths"]["/api/v1/widgets/{widget_id}"]["get"]["description"] == "One widget."


def test_request_id_is_empty_outside_a_request() -> None:
    request = Request({"type": "http", "headers": [], "state": {}})
    assert request_id(request) == ""


def test_make_app_fixture_builds_independent_apps(make_app: Callable[..., FastAPI]) -> None:
    first, second = (
        make_app(database_url="sqlite+aiosqlite://"),
        make_app(database_url="sqlite+aiosqlite://"),
    )
    assert first is not second
    assert first.state.metrics is not second.state.metrics
