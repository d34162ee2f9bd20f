"""The discovery hook in an app: static by default, Consul on demand, never blocking start-up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient

from meshmart_common.app import create_app
from meshmart_common.discovery import (
    ConsulRegistration,
    ConsulResolver,
    Endpoint,
    LeastOutstanding,
    RoundRobin,
    StaticResolver,
    discovery_lifespan,
)
from meshmart_common.settings import Environment, ServiceSettings
from meshmart_common.testing import free_port

STATIC_URLS = {"product": "http://127.0.0.1:8002", "trade": "http://trade.meshmart.svc:8000"}


def order_settings(tmp_path: Path, **overrides: Any) -> ServiceSettings:
    values: dict[str, Any] = {
        "service_name": "order",
        "environment": Environment.TEST,
        "host": "127.0.0.1",
        "port": 8003,
        "var_dir": tmp_path,
        "discovery_backend": "static",
        "load_balancer": "round_robin",
        "advertise_address": "",
        "consul_token": "",
        "consul_wait_seconds": 2,
    }
    values.update(overrides)
    return ServiceSettings(**values)


def order_app(settings: ServiceSettings, **kwargs: Any) -> FastAPI:
    return create_app(
        settings,
        title="order (discovery test)",
        description="Calls product and trade.",
        lifespan_hooks=[
            discovery_lifespan(
                settings,
                services=kwargs.get("services", ["product", "trade"]),
                static_urls=kwargs.get("static_urls", STATIC_URLS),
            )
        ],
    )


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[AsyncClient]:
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager:
        transport = ASGITransport(app=manager.app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def test_the_static_backend_resolves_the_configured_urls(tmp_path: Path) -> None:
    app = order_app(order_settings(tmp_path))
    async with running(app) as client:
        resolver = app.state.resolver
        assert isinstance(resolver, StaticResolver)
        assert isinstance(app.state.balancer, RoundRobin)
        assert app.state.registration is None
        assert resolver.endpoints("product") == (
            Endpoint("product", "http://127.0.0.1:8002", "127.0.0.1", 8002),
        )
        [trade] = resolver.endpoints("trade")
        assert trade.base_url == "http://trade.meshmart.svc:8000"
        response = await client.get("/readyz")
        assert response.json() == {"status": "ready", "checks": {"database": "ok"}}


async def test_the_balancer_follows_the_setting(tmp_path: Path) -> None:
    app = order_app(order_settings(tmp_path, load_balancer="least_outstanding"))
    async with running(app):
        assert isinstance(app.state.balancer, LeastOutstanding)


def test_a_missing_static_url_fails_at_once(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no static URL for trade"):
        discovery_lifespan(
            order_settings(tmp_path),
            services=["product", "trade"],
            static_urls={"product": "http://127.0.0.1:8002"},
        )


def test_a_malformed_static_url_fails_at_once(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must be an http or https URL"):
        discovery_lifespan(
            order_settings(tmp_path), services=["product"], static_urls={"product": "product:80"}
        )


def test_the_consul_backend_needs_no_static_urls(tmp_path: Path) -> None:
    discovery_lifespan(
        order_settings(tmp_path, discovery_backend="consul"), services=["product"], static_urls={}
    )


async def test_with_consul_away_the_service_starts_ready_but_degraded(tmp_path: Path) -> None:
    # Nothing listens there: every call to Consul is refused at once.
    settings = order_settings(
        tmp_path, discovery_backend="consul", consul_http_addr=f"http://127.0.0.1:{free_port()}"
    )
    app = order_app(settings)
    async with running(app) as client:
        assert isinstance(app.state.resolver, ConsulResolver)
        assert isinstance(app.state.registration, ConsulRegistration)
        assert app.state.resolver.endpoints("product") == ()
        response = await client.get("/readyz")
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "degraded"
        assert body["checks"]["database"] == "ok"
        registry = body["checks"]["registry"]
        assert registry.startswith("degraded: ")
        assert "not registered with consul yet" in registry
        assert "using 0 cached instances of product" in registry
        assert "using 0 cached instances of trade" in registry
