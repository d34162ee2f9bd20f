"""Request rate limits per caller, in process, answered with 429 and Retry-After.

A route opts in with a dependency::

    login_rate_limit = rate_limited("login", "rate_limit_login_per_minute")

    @router.post("/login", dependencies=[Depends(login_rate_limit)], ...)

The limit (requests per minute) is read from ``app.state.settings`` on every
request, so a live change (meshmart_common.live_config) applies at once; 0
turns the limit off. Each caller (the ``key`` dependency: the client address,
or the authenticated user) has a leaky bucket: a burst of up to ``limit``
requests passes, after that one request per ``60 / limit`` seconds. A refused
request is not counted, and raises :class:`~meshmart_common.errors.TooManyRequests`
(429 problem+json with ``Retry-After`` in whole seconds, at least 1).

The counts live in one process (``app.state.rate_limiter``): each replica
counts on its own, so with N replicas the cluster lets through up to N times
the limit. That bounds abuse per instance; a global limit belongs to the
gateway or mesh in front (e.g. Istio's rate limit service).
"""

# No ``from __future__ import annotations`` here: FastAPI must see the real
# ``Depends(key)`` of the closure in rate_limited, which a string cannot name.

import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from meshmart_common.auth import CurrentUser
from meshmart_common.errors import TooManyRequests

Clock = Callable[[], float]
"""Seconds on a monotonic scale (``time.monotonic``; tests pass their own)."""

DEFAULT_MAX_KEYS = 100_000
# Float drift must not refuse a request that arrives exactly on time.
_EPSILON = 1e-9
# Idle buckets dropped per request, so memory is reclaimed as traffic flows.
_SWEEP_PER_CALL = 2


@dataclass(slots=True)
class _Bucket:
    level: float  # requests still "in the bucket"; drains at per_second
    updated: float
    per_second: float

    def drained(self, now: float) -> float:
        return max(0.0, self.level - (now - self.updated) * self.per_second)


class RateLimiter:
    """Leaky buckets keyed by (limit name, caller), with bounded memory.

    A bucket holds at most ``limit`` requests and drains at ``limit`` per
    minute; a request passes when it fits. Because the level is kept rather
    than the limit, a limit changed between two requests applies to the next
    one: raised, the caller passes again at once; lowered, the caller waits
    until the bucket has drained below the new limit.

    At most ``max_keys`` buckets are kept: empty ones are dropped as requests
    come in, and when the table is full the least recently used bucket goes
    (that caller starts afresh; memory stays bounded under a flood of keys).
    Not thread-safe: one event loop uses it.
    """

    def __init__(self, *, clock: Clock = time.monotonic, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[tuple[str, str], _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def acquire(self, name: str, key: str, per_minute: int) -> float:
        """Count one request of ``key`` against limit ``name``.

        Returns 0.0 when it passes (and is counted), otherwise the seconds
        until it would pass (it is not counted). ``per_minute <= 0`` means no
        limit.
        """
        if per_minute <= 0:
            return 0.0
        now = self.clock()
        self._sweep(now)
        per_second = per_minute / 60.0
        slot = (name, key)
        bucket = self._buckets.get(slot)
        level = bucket.drained(now) if bucket is not None else 0.0
        if level + 1 > per_minute + _EPSILON:
            return (level + 1 - per_minute) / per_second
        if bucket is None:
            while len(self._buckets) >= self.max_keys:
                self._buckets.popitem(last=False)
            self._buckets[slot] = _Bucket(level + 1, now, per_second)
        else:
            bucket.level, bucket.updated, bucket.per_second = level + 1, now, per_second
            self._buckets.move_to_end(slot)
        return 0.0

    def _sweep(self, now: float) -> None:
        # Oldest first: the front buckets are the likeliest to be empty.
        for _ in range(_SWEEP_PER_CALL):
            if not self._buckets:
                return
            slot, bucket = next(iter(self._buckets.items()))
            if bucket.drained(now) > 0:
                return
            del self._buckets[slot]


def rate_limiter(app: FastAPI) -> RateLimiter:
    """The app's limiter (``app.state.rate_limiter``), created on first use."""
    limiter: RateLimiter | None = getattr(app.state, "rate_limiter", None)
    if limiter is None:
        limiter = RateLimiter()
        app.state.rate_limiter = limiter
    return limiter


async def client_address(request: Request) -> str:
    """Rate-limit key: the client's IP address as the ASGI server reports it.

    X-Forwarded-For is not read here: anyone can send it. Behind a proxy,
    let the server rewrite the address from the proxies it trusts (uvicorn
    ``--proxy-headers`` with ``FORWARDED_ALLOW_IPS``).
    """
    return f"ip:{request.client.host}" if request.client else "ip:unknown"


async def authenticated_user(principal: CurrentUser) -> str:
    """Rate-limit key: the verified caller (a request without a valid token gets 401 first)."""
    return f"user:{principal.user_id}"


def rate_limited(
    name: str, setting: str, key: Callable[..., Awaitable[str]] = client_address
) -> Callable[[Request, str], Awaitable[None]]:
    """A dependency limiting requests per ``key`` to ``settings.<setting>`` per minute.

    ``key`` is itself a dependency (:func:`client_address`,
    :func:`authenticated_user` or any other returning a string), resolved
    before the count, so authentication errors win over 429. ``name``
    separates the buckets of different limits and appears in the 429 detail.
    """

    async def enforce_rate_limit(request: Request, subject: Annotated[str, Depends(key)]) -> None:
        per_minute = int(getattr(request.app.state.settings, setting))
        wait = rate_limiter(request.app).acquire(name, subject, per_minute)
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            raise TooManyRequests(
                f"Too many {name} requests (limit {per_minute} per minute); "
                f"retry in {retry_after} s.",
                retry_after=retry_after,
            )

    return enforce_rate_limit
