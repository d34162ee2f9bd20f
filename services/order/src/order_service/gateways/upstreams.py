"""The REST clients of the services order calls, one shared connection pool."""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from meshmart_common.discovery import Balancer, Resolver, StaticResolver, make_balancer
from meshmart_common.resilience import Breakers, MonotonicClock, RetryBudget
from meshmart_common.service_client import ServiceClient, UpstreamMetrics
from order_service.settings import Settings

PRODUCT = "product"
TRADE = "trade"


@dataclass(slots=True)
class Upstreams:
    """The product and trade clients of one app."""

    product: ServiceClient
    trade: ServiceClient

    @classmethod
    def from_resolver(
        cls,
        resolver: Resolver,
        settings: Settings,
        client: httpx.AsyncClient,
        *,
        balancer: Balancer | None = None,
        clock: MonotonicClock = time.monotonic,
        metrics: UpstreamMetrics | None = None,
    ) -> Upstreams:
        """Clients that find product and trade through ``resolver``, sharing ``client``'s pool.

        ``balancer`` (e.g. ``app.state.balancer``; default: round robin) may
        be shared, as the discovery balancers keep their state per service.
        Each client gets its own circuit breakers and retry budget, set from the
        settings (UPSTREAM_TIMEOUT_SECONDS, UPSTREAM_RETRIES,
        UPSTREAM_RETRY_BUDGET_RATIO, BREAKER_FAILURE_THRESHOLD,
        BREAKER_COOLDOWN_SECONDS). ``clock`` drives breakers and budgets (tests
        move it by hand). ``metrics`` (``app.state.upstream_metrics``) counts
        the attempts per instance and shows the breakers on /metrics.
        """

        def service_client(name: str) -> ServiceClient:
            return ServiceClient(
                name,
                resolver=resolver,
                balancer=balancer,
                timeout=settings.upstream_timeout_seconds,
                retries=settings.upstream_retries,
                breakers=Breakers(
                    failure_threshold=settings.breaker_failure_threshold,
                    cooldown_seconds=settings.breaker_cooldown_seconds,
                    clock=clock,
                ),
                retry_budget=RetryBudget(ratio=settings.upstream_retry_budget_ratio, clock=clock),
                client=client,
                metrics=metrics,
            )

        return cls(product=service_client(PRODUCT), trade=service_client(TRADE))

    @classmethod
    def from_settings(cls, settings: Settings, client: httpx.AsyncClient) -> Upstreams:
        """Clients at the configured URLs (PRODUCT_URL, TRADE_URL), sharing ``client``'s pool."""
        resolver = StaticResolver({PRODUCT: settings.product_url, TRADE: settings.trade_url})
        return cls.from_resolver(
            resolver, settings, client, balancer=make_balancer(settings.load_balancer)
        )

    def breaker_states(self) -> dict[str, dict[str, str]]:
        """Service -> instance id -> circuit breaker state, for metrics and debugging."""
        return {
            self.product.name: self.product.breaker_states(),
            self.trade.name: self.trade.breaker_states(),
        }
