"""Client-side load balancing across the healthy instances of a service.

``LOAD_BALANCER=round_robin`` (:class:`RoundRobin`) takes the instances in
turn; ``least_outstanding`` (:class:`LeastOutstanding`) sends each call to the
instance with the fewest calls in flight from this process, which steers work
away from a slow instance without any shared state. Both keep their state per
service, so calls to product and trade interleaving cannot make one of them
always hit the same instance.
"""

from __future__ import annotations

from collections.abc import Sequence

from meshmart_common.discovery.base import Balancer, Endpoint

BALANCERS = ("round_robin", "least_outstanding")


class RoundRobin:
    """Each service's instances in turn (in the resolver's order, sorted by instance id)."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    def choose(self, endpoints: Sequence[Endpoint]) -> Endpoint:
        """The next instance of this service."""
        if not endpoints:
            raise ValueError("no endpoint to choose from")
        service = endpoints[0].service
        turn = self._next.get(service, 0)
        self._next[service] = turn + 1
        return endpoints[turn % len(endpoints)]

    def started(self, endpoint: Endpoint) -> None:
        """Round robin does not count calls."""

    def finished(self, endpoint: Endpoint) -> None:
        """Round robin does not count calls."""


class LeastOutstanding:
    """The instance with the fewest calls in flight; ties go round robin.

    Counts are kept per service and instance id. An instance that leaves the
    resolver's list is forgotten at the next choice for its service (a call
    still in flight to it then finishes without effect), and a count that
    drops to zero is removed, so nothing grows with instance churn.
    """

    def __init__(self) -> None:
        self._in_flight: dict[str, dict[str, int]] = {}
        self._tie_breaker = RoundRobin()

    def choose(self, endpoints: Sequence[Endpoint]) -> Endpoint:
        """One of the least busy instances of this service."""
        if not endpoints:
            raise ValueError("no endpoint to choose from")
        counts = self._in_flight.get(endpoints[0].service)
        if counts:
            current = {e.instance_id for e in endpoints}
            for gone in [i for i in counts if i not in current]:
                del counts[gone]
            fewest = min(counts.get(e.instance_id, 0) for e in endpoints)
            endpoints = [e for e in endpoints if counts.get(e.instance_id, 0) == fewest]
        return self._tie_breaker.choose(endpoints)

    def started(self, endpoint: Endpoint) -> None:
        """Count a call to ``endpoint``."""
        counts = self._in_flight.setdefault(endpoint.service, {})
        counts[endpoint.instance_id] = counts.get(endpoint.instance_id, 0) + 1

    def finished(self, endpoint: Endpoint) -> None:
        """Uncount a call to ``endpoint`` (ignored for a forgotten instance)."""
        counts = self._in_flight.get(endpoint.service)
        if not counts or endpoint.instance_id not in counts:
            return
        left = counts[endpoint.instance_id] - 1
        if left > 0:
            counts[endpoint.instance_id] = left
        else:
            del counts[endpoint.instance_id]
            if not counts:
                del self._in_flight[endpoint.service]

    def in_flight(self, endpoint: Endpoint) -> int:
        """Calls to ``endpoint`` in flight now."""
        return self._in_flight.get(endpoint.service, {}).get(endpoint.instance_id, 0)


def make_balancer(kind: str) -> Balancer:
    """The balancer named by ``LOAD_BALANCER``: "round_robin" or "least_outstanding"."""
    if kind == "round_robin":
        return RoundRobin()
    if kind == "least_outstanding":
        return LeastOutstanding()
    raise ValueError(f"unknown load balancer {kind!r}; expected one of {', '.join(BALANCERS)}")
