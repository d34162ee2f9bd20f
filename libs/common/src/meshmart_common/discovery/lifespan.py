"""Wiring for a service: the lifespan hook that runs discovery.

::

    app = create_app(
        settings,
        ...,
        lifespan_hooks=[
            discovery_lifespan(
                settings,
                services=["product", "trade"],
                static_urls={"product": settings.product_url, "trade": settings.trade_url},
            ),
            ...,
        ],
    )

Every request then finds ``app.state.resolver`` (a Resolver) and
``app.state.balancer`` (the Balancer of ``LOAD_BALANCER``).

- ``DISCOVERY_BACKEND=static``: a StaticResolver over ``static_urls``; nothing
  registers and nothing talks to Consul.
- ``DISCOVERY_BACKEND=consul``: this instance registers with the local agent
  in the background (retrying while the agent is away, so the service starts
  and serves anyway), a ConsulResolver watches ``services``, and /readyz gets
  a "registry" check that is "degraded" (200, never 503) while the
  registration is pending or Consul is unreachable. At shutdown the instance
  deregisters first (so callers stop choosing it), then the watchers stop.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from meshmart_common.discovery.balancer import make_balancer
from meshmart_common.discovery.base import Resolver, StaticResolver
from meshmart_common.discovery.client import consul_client
from meshmart_common.discovery.consul import ConsulResolver
from meshmart_common.discovery.registration import ConsulRegistration
from meshmart_common.health import ReadinessCheck
from meshmart_common.settings import ServiceSettings

# The shape of meshmart_common.app.LifespanHook, spelled out so that app.py
# may import this module without an import cycle.
DiscoveryHook = Callable[[FastAPI], AbstractAsyncContextManager[None]]

REGISTRY_CHECK = "registry"


def registry_check(registration: ConsulRegistration, resolver: Resolver) -> ReadinessCheck:
    """The /readyz check "registry": never fails, degraded while Consul is not in reach."""

    async def check() -> str | None:
        reasons = [r for r in (registration.degraded(), resolver.degraded()) if r]
        return "; ".join(reasons) or None

    return check


def discovery_lifespan(
    settings: ServiceSettings,
    services: Sequence[str],
    static_urls: Mapping[str, str],
) -> DiscoveryHook:
    """A create_app lifespan hook running discovery for the ``services`` this one calls.

    ``static_urls`` maps each of them to its base URL for the static backend
    (checked here: a missing or malformed URL fails at once, not at the first
    call). See the module docstring for what each backend does.
    """
    if settings.discovery_backend == "static":
        missing = [name for name in services if name not in static_urls]
        if missing:
            raise ValueError(f"no static URL for {', '.join(missing)}")
        StaticResolver(static_urls)  # validates every URL now
    elif settings.discovery_backend != "consul":
        raise ValueError(f"unknown discovery backend {settings.discovery_backend!r}")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.balancer = make_balancer(settings.load_balancer)
        if settings.discovery_backend == "static":
            app.state.resolver = StaticResolver(static_urls)
            app.state.registration = None
            yield
            return

        client = consul_client(settings)
        registration = ConsulRegistration(settings, client=client)
        resolver = ConsulResolver(client, services, wait_seconds=settings.consul_wait_seconds)
        app.state.resolver = resolver
        app.state.registration = registration
        app.state.readiness.add(REGISTRY_CHECK, registry_check(registration, resolver))
        try:
            await registration.start()
            await resolver.start()
            yield
        finally:
            try:
                await registration.stop()
                await resolver.aclose()
            finally:
                with contextlib.suppress(Exception):
                    await client.close()

    return lifespan
