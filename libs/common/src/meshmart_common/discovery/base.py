"""The vocabulary of discovery: endpoints, resolvers and balancers.

A :class:`Resolver` answers "where are the healthy instances of service X"
from memory, never waiting on the network (the Consul resolver keeps its
answer fresh in a background task). A :class:`Balancer` picks one of them
for a call. :class:`StaticResolver` is the embedded default: one fixed URL
per service (``make run``, or a Kubernetes DNS name where Istio balances).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One instance of a service: where to send its calls."""

    service: str
    instance_id: str
    address: str  # a host or IP, never a URL
    port: int
    scheme: str = "http"

    @property
    def base_url(self) -> str:
        """``scheme://address:port`` (IPv6 addresses bracketed)."""
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.scheme}://{host}:{self.port}"

    @classmethod
    def from_url(cls, service: str, url: str) -> Endpoint:
        """The endpoint of a fixed base URL (its instance id is the URL)."""
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"the URL of {service} must be an http or https URL: {url!r}")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        return cls(service, url.rstrip("/"), parsed.host, port, parsed.scheme)


class Resolver(Protocol):
    """Where the healthy instances of each service are, answered from memory."""

    def endpoints(self, service: str) -> Sequence[Endpoint]:
        """The healthy instances of ``service`` known now; empty when none is."""
        ...

    def degraded(self) -> str | None:
        """Why answers may be out of date (for /readyz), or None when they are fresh."""
        ...

    async def start(self) -> None:
        """Begin keeping answers fresh (no-op for static)."""
        ...

    async def aclose(self) -> None:
        """Stop background work."""
        ...


class Balancer(Protocol):
    """Picks the instance for one call and learns when the call ends."""

    def choose(self, endpoints: Sequence[Endpoint]) -> Endpoint:
        """One of ``endpoints`` (never empty)."""
        ...

    def started(self, endpoint: Endpoint) -> None:
        """A call to ``endpoint`` began."""
        ...

    def finished(self, endpoint: Endpoint) -> None:
        """A call to ``endpoint`` ended, however it ended."""
        ...


class StaticResolver:
    """One fixed base URL per service; talks to nobody."""

    def __init__(self, urls: Mapping[str, str]) -> None:
        self._endpoints = {name: (Endpoint.from_url(name, url),) for name, url in urls.items()}

    def endpoints(self, service: str) -> Sequence[Endpoint]:
        """The configured URL of ``service`` (empty if none is configured)."""
        return self._endpoints.get(service, ())

    def degraded(self) -> str | None:
        """Never: a fixed URL is never out of date."""
        return None

    async def start(self) -> None:
        """Nothing to start."""

    async def aclose(self) -> None:
        """Nothing to stop."""
