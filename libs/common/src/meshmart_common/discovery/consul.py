"""Discovery from Consul: the passing instances of each watched service, kept in memory.

One background task per watched service runs blocking queries on
``/v1/health/service/<name>?passing`` (``index`` = the last ``X-Consul-Index``,
``wait`` = ``CONSUL_WAIT_SECONDS``), so an answer arrives as soon as the set of
healthy instances changes and :meth:`ConsulResolver.endpoints` only reads
memory. Following Consul's blocking-query guidance, the watcher resets the
index to 0 when it goes backwards, never blocks on an index below 1, and rate
limits itself (a token bucket: two quick calls, then at most one per
``min_interval``) so a churning or misbehaving index cannot become a busy loop.

When Consul cannot be reached (refused, timeout, 5xx, ACL refusal) the last
known list stays in use, :meth:`ConsulResolver.degraded` says since when, and
the watcher retries with jittered backoff capped at a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from consul.exceptions import ConsulException  # type: ignore[import-untyped]

from meshmart_common.discovery.base import Endpoint
from meshmart_common.discovery.client import consul_client
from meshmart_common.messaging.backoff import Backoff
from meshmart_common.settings import ServiceSettings

logger = logging.getLogger("meshmart.discovery")

_WATCH_BACKOFF = Backoff(timedelta(seconds=0.25), timedelta(seconds=3))
_NON_BLOCKING_TIMEOUT_SECONDS = 10.0
_BLOCKING_MARGIN_SECONDS = 5.0


class _TokenBucket:
    """Two calls at once, then one per ``interval`` seconds (Consul's suggested rate limit)."""

    def __init__(self, interval: float, burst: int = 2) -> None:
        self.interval = interval
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp: float | None = None

    async def take(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self.stamp is not None and self.interval > 0:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) / self.interval)
        self.stamp = now
        if self.tokens < 1 and self.interval > 0:
            await asyncio.sleep((1 - self.tokens) * self.interval)
            self.tokens, self.stamp = 1.0, loop.time()
        self.tokens = max(self.tokens - 1, 0.0)


@dataclass(slots=True)
class _Watch:
    """What one watcher knows about one service."""

    service: str
    limiter: _TokenBucket
    endpoints: tuple[Endpoint, ...] = ()
    index: int = 0
    failing_since: datetime | None = None
    failure: str | None = None
    settled: asyncio.Event = field(default_factory=asyncio.Event)


def endpoints_of(service: str, entries: Any) -> tuple[Endpoint, ...]:
    """The endpoints in a ``/v1/health/service`` answer, sorted by instance id.

    Each entry's ``Service.Address``, or ``Node.Address`` when the service has
    none (the agent's address, as Consul's DNS does); malformed entries are skipped.
    """
    found: dict[str, Endpoint] = {}
    for entry in entries or ():
        try:
            svc = entry["Service"]
            address = svc.get("Address") or entry["Node"]["Address"]
            port = int(svc["Port"])
            instance_id = str(svc["ID"])
            if not address or not 0 < port < 65536:
                raise ValueError("no address or port")
        except (KeyError, TypeError, ValueError, AttributeError):
            logger.warning("skipping a malformed consul entry of %s: %r", service, entry)
            continue
        found[instance_id] = Endpoint(service, instance_id, str(address), port)
    return tuple(found[key] for key in sorted(found))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConsulException) and str(exc):
        return f"{type(exc).__name__}: {str(exc)[:80]}"
    return type(exc).__name__


class ConsulResolver:
    """A Resolver answering from memory what Consul says is healthy.

    ``consul`` is a ``consul.aio.Consul`` to share (the caller closes it) or
    the settings to make one from (created in :meth:`start`, closed in
    :meth:`aclose`). ``services`` are the names to watch; asking for any
    other name answers nothing. ``wait_seconds`` defaults to
    ``CONSUL_WAIT_SECONDS`` (30 without settings).
    """

    def __init__(
        self,
        consul: Any,
        services: Iterable[str],
        *,
        wait_seconds: int | None = None,
        first_answer_timeout: float = 2.0,
        min_interval: float = 1.0,
        backoff: Backoff = _WATCH_BACKOFF,
    ) -> None:
        if isinstance(consul, ServiceSettings):
            self._settings: ServiceSettings | None = consul
            self._client: Any = None
            if wait_seconds is None:
                wait_seconds = consul.consul_wait_seconds
        else:
            self._settings = None
            self._client = consul
        self._owns_client = self._client is None
        self.wait_seconds = 30 if wait_seconds is None else wait_seconds
        if self.wait_seconds < 1:
            raise ValueError("wait_seconds must be at least 1")
        self.first_answer_timeout = first_answer_timeout
        self._backoff = backoff
        self._watches = {
            name: _Watch(name, _TokenBucket(min_interval)) for name in dict.fromkeys(services)
        }
        self._tasks: list[asyncio.Task[None]] = []
        self._unknown_logged: set[str] = set()

    @property
    def services(self) -> tuple[str, ...]:
        """The watched service names."""
        return tuple(self._watches)

    def endpoints(self, service: str) -> Sequence[Endpoint]:
        """The passing instances of ``service`` known now (the last list while Consul is away)."""
        watch = self._watches.get(service)
        if watch is None:
            if service not in self._unknown_logged:
                self._unknown_logged.add(service)
                logger.warning("%s is not a watched service (watched: %s)", service, self.services)
            return ()
        return watch.endpoints

    def degraded(self) -> str | None:
        """Why some answers may be stale, or None when every watcher is in touch with Consul."""
        notes = []
        for watch in self._watches.values():
            if watch.failing_since is None:
                continue
            since = watch.failing_since.strftime("%Y-%m-%dT%H:%M:%SZ")
            notes.append(
                f"consul unreachable since {since} ({watch.failure}); using "
                f"{len(watch.endpoints)} cached instances of {watch.service}"
            )
        return "; ".join(notes) or None

    async def start(self) -> None:
        """Start one watcher per service; wait (bounded) until each has tried once.

        So a fresh process does not begin with nothing when Consul is there,
        and does not wait long when it is not.
        """
        if self._tasks:
            return
        if self._client is None:
            assert self._settings is not None
            self._client = consul_client(self._settings)
        self._tasks = [
            asyncio.create_task(self._watch(watch), name=f"consul-watch-{name}")
            for name, watch in self._watches.items()
        ]
        if self._watches and self.first_answer_timeout > 0:
            settled = [watch.settled.wait() for watch in self._watches.values()]
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.first_answer_timeout):
                    await asyncio.gather(*settled)

    async def aclose(self) -> None:
        """Stop the watchers and close an own client."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            with contextlib.suppress(Exception):
                await client.close()

    async def _watch(self, watch: _Watch) -> None:
        failures = 0
        while True:
            await watch.limiter.take()
            try:
                index, entries = await self._query(watch)
            except Exception as exc:
                failures += 1
                self._failed(watch, exc)
                watch.settled.set()
                await asyncio.sleep(self._backoff.delay(failures).total_seconds())
                continue
            failures = 0
            self._answered(watch, index, entries)
            watch.settled.set()

    async def _query(self, watch: _Watch) -> tuple[int, Any]:
        blocking = watch.index > 0
        timeout = (
            self.wait_seconds + self.wait_seconds / 16 + _BLOCKING_MARGIN_SECONDS
            if blocking
            else _NON_BLOCKING_TIMEOUT_SECONDS
        )
        async with asyncio.timeout(timeout):
            raw_index, entries = await self._client.health.service(
                watch.service,
                index=str(watch.index) if blocking else None,
                wait=f"{self.wait_seconds}s",
                passing=True,
            )
        try:
            index = int(raw_index)
        except (TypeError, ValueError) as exc:
            raise ConsulException(f"unreadable X-Consul-Index {raw_index!r}") from exc
        return index, entries

    def _answered(self, watch: _Watch, index: int, entries: Any) -> None:
        # An index that went backwards (snapshot restore, Consul upgrade) would
        # block on a future that never comes: start over with a plain query.
        # Otherwise never block on an index below 1 (that returns at once).
        watch.index = 0 if index < watch.index else max(index, 1)
        endpoints = endpoints_of(watch.service, entries)
        if watch.failing_since is not None:
            logger.info(
                "consul reachable again for %s (unreachable since %s)",
                watch.service,
                watch.failing_since.isoformat(timespec="seconds"),
            )
            watch.failing_since = None
            watch.failure = None
        if endpoints != watch.endpoints:
            logger.info(
                "%s: %d passing instance(s) %s",
                watch.service,
                len(endpoints),
                [e.instance_id for e in endpoints],
            )
            watch.endpoints = endpoints

    def _failed(self, watch: _Watch, exc: BaseException) -> None:
        watch.failure = _describe(exc)
        # A fresh plain query once Consul is back, whatever happened meanwhile.
        watch.index = 0
        if watch.failing_since is None:
            watch.failing_since = datetime.now(UTC)
            logger.warning(
                "consul unreachable for %s (%r); using %d cached instance(s)",
                watch.service,
                exc,
                len(watch.endpoints),
            )
        else:
            logger.debug("consul still unreachable for %s: %r", watch.service, exc)
