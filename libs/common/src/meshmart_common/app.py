"""The one FastAPI app factory every MeshMart service uses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from meshmart_common.auth import JwksKeySource, KeySource, TokenVerifier
from meshmart_common.contention import TransactionRetryMiddleware
from meshmart_common.db import Database
from meshmart_common.discovery import discovery_lifespan
from meshmart_common.errors import install_error_handlers, install_problem_openapi
from meshmart_common.health import Readiness, health_router
from meshmart_common.live_config import COMMON_LIVE_KEYS, admin_config_router, live_config_lifespan
from meshmart_common.observability import HttpMetrics, RequestContextMiddleware, configure_logging
from meshmart_common.service_client import UpstreamMetrics
from meshmart_common.settings import ServiceSettings
from meshmart_common.tracing import configure_tracing, flush_spans, instrument_app

API_PREFIX = "/api/v1"

LifespanHook = Callable[[FastAPI], AbstractAsyncContextManager[None]]
"""A part that starts with the app and stops with it (bus, registry, tracing...)."""


def _metrics_router(registry: CollectorRegistry) -> APIRouter:
    router = APIRouter(tags=["platform"])

    @router.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}},
    )
    async def metrics() -> Response:
        """Prometheus metrics (text exposition format)."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router


def create_app(
    settings: ServiceSettings,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter] = (),
    root_routers: Sequence[APIRouter] = (),
    lifespan_hooks: Sequence[LifespanHook] = (),
    key_source: KeySource | None = None,
    openapi_tags: list[dict[str, str]] | None = None,
    upstreams: Mapping[str, str] | None = None,
    live_keys: Sequence[str] | None = COMMON_LIVE_KEYS,
) -> FastAPI:
    """Build a service app.

    ``routers`` are mounted under /api/v1, ``root_routers`` at the root (for
    example /.well-known/jwks.json). The app gets the shared error handlers,
    request ids, metrics at /metrics, /healthz and /readyz (with a database
    check), a Database at ``app.state.database`` and a token verifier at
    ``app.state.token_verifier`` (JWKS from settings unless ``key_source`` is
    given). Its OpenAPI document gives every 4xx/5xx response the problem+json
    body the error handlers send. ``lifespan_hooks`` are entered in order at
    start-up and exited in reverse at shutdown.

    Discovery runs before them (``DISCOVERY_BACKEND``): the instance registers
    with Consul when that backend is on, and ``app.state.resolver`` finds the
    ``upstreams`` this service calls (name -> static base URL, used by the
    static backend), so hooks may build their clients from it. Before that,
    the settings named in ``live_keys`` start following Consul KV (consul
    backend only), and GET /api/v1/admin/config shows their effective values
    (``live_keys=None`` leaves live configuration to a hook of the caller's).

    Tracing follows the OTEL_* environment (:mod:`meshmart_common.tracing`):
    off unless an exporter is asked for; when on, requests, httpx calls and
    database statements get spans, and the spans still queued are exported
    at shutdown.
    """
    configure_logging(settings.log_level, settings.service_name, settings.log_format)
    # OTEL_* from the environment; None (nothing installed) when tracing is off.
    tracer_provider = configure_tracing(settings)
    database = Database(
        settings.database_url,
        read_url=settings.database_read_url,
        echo=settings.database_echo,
        pool_size=settings.database_pool_size,
    )
    discovery = discovery_lifespan(
        settings, services=list(upstreams or {}), static_urls=dict(upstreams or {})
    )
    live = [] if live_keys is None else [live_config_lifespan(live_keys)]
    readiness = Readiness()
    readiness.add("database", database.ping)
    registry = CollectorRegistry()
    metrics = HttpMetrics(registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            # Registered first so it runs last: hooks (outbox relay, consumers)
            # may still use the database while they stop, and a hook that
            # fails to start must not leak the pool either.
            if tracer_provider is not None:
                # Runs after everything else: the last spans (consumers and
                # the relay stopping) still reach the collector.
                stack.push_async_callback(flush_spans)
            stack.push_async_callback(lambda: app.state.database.dispose())
            for hook in (*live, discovery, *lifespan_hooks):
                await stack.enter_async_context(hook(app))
            yield

    app = FastAPI(
        title=title,
        description=description,
        version=settings.service_version,
        lifespan=lifespan,
        openapi_tags=openapi_tags,
    )
    app.state.settings = settings
    app.state.database = database
    app.state.readiness = readiness
    app.state.metrics = metrics
    # Calls to other services, for the ServiceClients a service builds.
    app.state.upstream_metrics = UpstreamMetrics(registry)
    app.state.token_verifier = TokenVerifier(
        key_source or JwksKeySource(settings.jwks_url, ttl=settings.jwks_cache_seconds),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )

    install_error_handlers(app)
    install_problem_openapi(app)
    # Added first, so it runs inside the request context: a request run again
    # after a lock conflict keeps its request id and is one access line.
    app.add_middleware(TransactionRetryMiddleware)
    app.add_middleware(RequestContextMiddleware, metrics=metrics)
    app.include_router(health_router())
    app.include_router(_metrics_router(registry))
    for router in root_routers:
        app.include_router(router)
    for router in (*routers, admin_config_router()):
        app.include_router(router, prefix=API_PREFIX)
    if tracer_provider is not None:
        instrument_app(app, database)
    return app


def request_id(request: Request) -> str:
    """The current request's id."""
    value = getattr(request.state, "request_id", "")
    return value if isinstance(value, str) else ""
