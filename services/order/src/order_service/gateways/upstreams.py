"""The REST clients of the services order calls, one shared connection pool."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from meshmart_common.service_client import ServiceClient
from order_service.settings import Settings


@dataclass(slots=True)
class Upstreams:
    """The product and trade clients of one app."""

    product: ServiceClient
    trade: ServiceClient

    @classmethod
    def from_settings(cls, settings: Settings, client: httpx.AsyncClient) -> Upstreams:
        """Clients at the configured URLs, sharing ``client``'s connection pool."""
        timeout = settings.upstream_timeout_seconds
        return cls(
            product=ServiceClient("product", settings.product_url, timeout=timeout, client=client),
            trade=ServiceClient("trade", settings.trade_url, timeout=timeout, client=client),
        )
