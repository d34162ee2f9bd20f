"""The Consul resolver's watch loop against a scripted client (no network).

The script gives each service's next answers in order: an ``(index, entries)``
pair, or an exception to raise. With nothing scripted, a call blocks like a
blocking query with no change.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from consul.exceptions import ConsulException  # type: ignore[import-untyped]

from meshmart_common.discovery.base import Endpoint
from meshmart_common.discovery.consul import ConsulResolver, _TokenBucket, endpoints_of
from meshmart_common.messaging.backoff import Backoff
from meshmart_common.messaging.testing import eventually

FAST_BACKOFF = Backoff(timedelta(milliseconds=5), timedelta(milliseconds=20))

Answer = tuple[str, list[dict[str, Any]]] | BaseException


class ScriptedHealth:
    """``health.service`` of a consul.aio.Consul, answering from a script."""

    def __init__(self) -> None:
        self.answers: dict[str, asyncio.Queue[Answer]] = defaultdict(asyncio.Queue)
        self.calls: list[dict[str, Any]] = []

    def script(self, service: str, *answers: Answer) -> None:
        for answer in answers:
            self.answers[service].put_nowait(answer)

    async def service(
        self, service: str, *, index: str | None = None, wait: str | None = None, passing: bool
    ) -> tuple[str, list[dict[str, Any]]]:
        self.calls.append({"service": service, "index": index, "wait": wait, "passing": passing})
        answer = await self.answers[service].get()
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def calls_of(self, service: str) -> list[dict[str, Any]]:
        return [call for call in self.calls if call["service"] == service]


class ScriptedConsul:
    def __init__(self) -> None:
        self.health = ScriptedHealth()
        self.closed = False

    async def close(self) -> None:
        self.closed = True


def entry(
    instance_id: str, port: int, address: str = "", node_address: str = "10.9.9.9"
) -> dict[str, Any]:
    return {
        "Node": {"Node": "node-1", "Address": node_address},
        "Service": {"ID": instance_id, "Service": "product", "Address": address, "Port": port},
        "Checks": [],
    }


def calls_at_least(consul: ScriptedConsul, count: int) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return len(consul.health.calls) >= count

    return probe


async def degraded_reason(resolver: ConsulResolver, containing: str = "") -> str:
    """The degraded reason once it contains ``containing`` (polls)."""

    async def probe() -> str | None:
        reason = resolver.degraded()
        return reason if reason is not None and containing in reason else None

    reason = await eventually(probe, what=f"degraded ({containing or 'any reason'})")
    assert reason is not None
    return reason


def resolver_for(consul: ScriptedConsul, *services: str, **kwargs: Any) -> ConsulResolver:
    kwargs.setdefault("backoff", FAST_BACKOFF)
    kwargs.setdefault("min_interval", 0.0)
    kwargs.setdefault("wait_seconds", 5)
    return ConsulResolver(consul, services or ("product",), **kwargs)


def test_entries_become_sorted_endpoints_with_the_node_address_as_fallback() -> None:
    entries = [
        entry("product-b", 8002, address="10.0.0.2"),
        entry("product-a", 8001, address=""),
        {"Service": {"ID": "broken"}},
        entry("product-c", 0, address="10.0.0.3"),
    ]
    assert endpoints_of("product", entries) == (
        Endpoint("product", "product-a", "10.9.9.9", 8001),
        Endpoint("product", "product-b", "10.0.0.2", 8002),
    )
    assert endpoints_of("product", None) == ()


async def test_start_waits_for_the_first_answer() -> None:
    consul = ScriptedConsul()
    consul.health.script("product", ("7", [entry("p1", 8001, "10.0.0.1")]))
    resolver = resolver_for(consul)
    await resolver.start()
    try:
        assert resolver.endpoints("product") == (Endpoint("product", "p1", "10.0.0.1", 8001),)
        assert resolver.degraded() is None
    finally:
        await resolver.aclose()


async def test_the_watcher_blocks_on_the_last_index() -> None:
    consul = ScriptedConsul()
    consul.health.script(
        "product",
        ("7", [entry("p1", 8001, "10.0.0.1")]),
        ("9", [entry("p1", 8001, "10.0.0.1"), entry("p2", 8001, "10.0.0.2")]),
    )
    resolver = resolver_for(consul, wait_seconds=5)
    await resolver.start()
    try:

        async def two() -> bool:
            return len(resolver.endpoints("product")) == 2

        await eventually(two, what="the second instance")
        await eventually(calls_at_least(consul, 3), what="the third blocking call")
        first, second, third = consul.health.calls[:3]
        assert first == {"service": "product", "index": None, "wait": "5s", "passing": True}
        assert (second["index"], second["wait"]) == ("7", "5s")
        assert third["index"] == "9"
    finally:
        await resolver.aclose()


async def test_an_index_that_goes_backwards_restarts_with_a_plain_query() -> None:
    consul = ScriptedConsul()
    consul.health.script(
        "product",
        ("50", [entry("p1", 8001, "10.0.0.1")]),
        ("12", [entry("p2", 8001, "10.0.0.2")]),
        ("13", [entry("p2", 8001, "10.0.0.2")]),
    )
    resolver = resolver_for(consul)
    await resolver.start()
    try:
        await eventually(calls_at_least(consul, 4), what="the call after the reset")
        indexes = [call["index"] for call in consul.health.calls[:4]]
        assert indexes == [None, "50", None, "13"]
        assert [e.instance_id for e in resolver.endpoints("product")] == ["p2"]
    finally:
        await resolver.aclose()


async def test_an_index_of_zero_is_never_blocked_on() -> None:
    consul = ScriptedConsul()
    consul.health.script("product", ("0", []))
    resolver = resolver_for(consul)
    await resolver.start()
    try:
        await eventually(calls_at_least(consul, 2), what="the second call")
        assert consul.health.calls[1]["index"] == "1"
    finally:
        await resolver.aclose()


async def test_a_tight_loop_is_rate_limited() -> None:
    consul = ScriptedConsul()
    # Twenty answers that arrive at once with an unchanged index: a badly
    # behaved server. Two go through at once; the next waits for min_interval.
    consul.health.script("product", *[("5", [entry("p1", 8001, "10.0.0.1")])] * 20)
    resolver = resolver_for(consul, min_interval=60.0)
    await resolver.start()
    try:
        await asyncio.sleep(0.3)
        assert len(consul.health.calls) == 2
    finally:
        await resolver.aclose()


async def test_the_token_bucket_lets_two_through_then_waits() -> None:
    bucket = _TokenBucket(interval=0.2)
    loop = asyncio.get_running_loop()
    begin = loop.time()
    await bucket.take()
    await bucket.take()
    burst = loop.time() - begin
    await bucket.take()
    # Only lower bounds: a slow machine can make this longer, never shorter.
    assert loop.time() - begin >= burst + 0.15


async def test_when_consul_fails_the_last_list_stays_and_it_is_degraded() -> None:
    consul = ScriptedConsul()
    consul.health.script(
        "product",
        ("7", [entry("p1", 8001, "10.0.0.1"), entry("p2", 8001, "10.0.0.2")]),
        ConnectionRefusedError("consul is away"),
    )
    resolver = resolver_for(consul)
    await resolver.start()
    try:
        reason = await degraded_reason(resolver)
        assert reason.startswith("consul unreachable since ")
        assert reason.endswith("(ConnectionRefusedError); using 2 cached instances of product")
        assert [e.instance_id for e in resolver.endpoints("product")] == ["p1", "p2"]

        # Consul is back: a plain query (index reset), and fresh again.
        consul.health.script("product", ("8", [entry("p2", 8001, "10.0.0.2")]))

        async def fresh() -> bool:
            return resolver.degraded() is None

        await eventually(fresh, what="recovery")
        assert [e.instance_id for e in resolver.endpoints("product")] == ["p2"]
        assert consul.health.calls[-2]["index"] is None
    finally:
        await resolver.aclose()


async def test_timeouts_and_server_errors_degrade_too() -> None:

    consul = ScriptedConsul()
    consul.health.script("product", TimeoutError(), ConsulException("500 no leader"))
    consul.health.script("trade", ("3", []))
    resolver = resolver_for(consul, "product", "trade")
    await resolver.start()
    try:
        reason = await degraded_reason(resolver, containing="500")
        assert "ConsulException: 500 no leader" in reason
        assert "using 0 cached instances of product" in reason
        assert "trade" not in reason
    finally:
        await resolver.aclose()


async def test_start_does_not_wait_long_when_consul_is_down() -> None:
    consul = ScriptedConsul()
    consul.health.script("product", *[ConnectionRefusedError()] * 50)
    resolver = resolver_for(consul, first_answer_timeout=30.0)
    await asyncio.wait_for(resolver.start(), timeout=10)
    try:
        assert resolver.endpoints("product") == ()
        reason = resolver.degraded()
        assert reason is not None
        assert "using 0 cached instances of product" in reason
    finally:
        await resolver.aclose()


async def test_start_gives_up_waiting_after_the_bound() -> None:
    consul = ScriptedConsul()  # nothing scripted: the first call hangs
    resolver = resolver_for(consul, first_answer_timeout=0.05)
    await asyncio.wait_for(resolver.start(), timeout=10)
    try:
        assert resolver.endpoints("product") == ()
    finally:
        await resolver.aclose()


async def test_an_unwatched_service_has_no_endpoints() -> None:
    consul = ScriptedConsul()
    consul.health.script("product", ("1", []))
    resolver = resolver_for(consul)
    await resolver.start()
    try:
        assert resolver.endpoints("trade") == ()
        assert resolver.services == ("product",)
    finally:
        await resolver.aclose()


async def test_aclose_stops_the_watchers_and_leaves_a_shared_client_open() -> None:
    consul = ScriptedConsul()
    resolver = resolver_for(consul, "product", "trade", first_answer_timeout=0)
    await resolver.start()
    tasks = [t for t in asyncio.all_tasks() if t.get_name().startswith("consul-watch-")]
    assert len(tasks) == 2
    await resolver.aclose()
    assert all(task.done() for task in tasks)
    assert consul.closed is False
    await resolver.aclose()  # twice is fine


def test_wait_seconds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="wait_seconds"):
        ConsulResolver(ScriptedConsul(), ["product"], wait_seconds=0)
