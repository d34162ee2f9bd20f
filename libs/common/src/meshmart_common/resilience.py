"""Resilience of service-to-service calls: circuit breakers and a retry budget.

:class:`CircuitBreaker` guards one upstream *instance*: after
``failure_threshold`` consecutive failures it opens and rejects calls for
``cooldown_seconds``, then lets one probe through (half-open); the probe's
success closes it, its failure opens it for another cool-down.
:class:`Breakers` holds one breaker per instance id and forgets instances
that have not been seen for a long time.

:class:`RetryBudget` caps retries the way Finagle's and Envoy's budgets do: a
retry may go while the retries of the last ``window_seconds`` stay within
``ratio`` of the requests plus a small floor per second, so that a failing
upstream sees at most ``1 + ratio`` times its normal load instead of
``1 + retries`` times (retry storms amplify outages).

Times come from an injectable monotonic clock (seconds), so tests move time by
hand instead of sleeping. All of it is used from one event loop and never
awaits, so it needs no locks.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import timedelta
from enum import StrEnum

from meshmart_common.messaging.backoff import Backoff

__all__ = [
    "DEFAULT_RETRY_BACKOFF",
    "BreakerState",
    "Breakers",
    "CircuitBreaker",
    "MonotonicClock",
    "RetryBudget",
]

MonotonicClock = Callable[[], float]
"""Seconds from an arbitrary start that never go back (``time.monotonic``)."""

DEFAULT_RETRY_BACKOFF = Backoff(base=timedelta(milliseconds=25), cap=timedelta(milliseconds=250))
"""Waits between attempts of one call: short, since a call has a deadline of seconds."""


class BreakerState(StrEnum):
    """Where a circuit breaker stands."""

    CLOSED = "closed"  # calls go through; consecutive failures are counted
    OPEN = "open"  # calls are rejected until the cool-down has passed
    HALF_OPEN = "half_open"  # the cool-down has passed: one probe call may go


class CircuitBreaker:
    """The circuit breaker of one upstream instance.

    A caller asks :meth:`acquire` before each call and then reports exactly
    one of :meth:`record_success`, :meth:`record_failure` or (the call ended
    without telling anything about the instance, e.g. it was cancelled)
    :meth:`release`.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cooldown_seconds: float = 5.0,
        clock: MonotonicClock = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if cooldown_seconds <= 0:
            raise ValueError("cooldown_seconds must be positive")
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._open = False
        self._failures = 0
        self._opened_at = 0.0
        # When the half-open probe was let through, None while no probe runs.
        self._probe_started: float | None = None

    @property
    def state(self) -> BreakerState:
        """closed, open, or half_open once an open breaker's cool-down has passed."""
        if not self._open:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at < self.cooldown_seconds:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    @property
    def consecutive_failures(self) -> int:
        """Failures since the last success (reset when the breaker closes)."""
        return self._failures

    def allows(self) -> bool:
        """Whether :meth:`acquire` would let a call through now (changes nothing)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        return not self._probe_running()

    def acquire(self) -> bool:
        """Let a call through if the breaker allows it; in half_open it becomes the probe."""
        if not self.allows():
            return False
        if self.state is BreakerState.HALF_OPEN:
            self._probe_started = self._clock()
        return True

    def record_success(self) -> None:
        """A call answered: close the breaker (unless it is a late answer while open)."""
        if self.state is BreakerState.OPEN and self._probe_started is None:
            # A call let through before the breaker opened; only a probe or
            # the end of the cool-down decides about an open breaker.
            return
        self._open = False
        self._failures = 0
        self._probe_started = None

    def record_failure(self) -> None:
        """A call failed: count it, open after the threshold, re-open after a failed probe."""
        now = self._clock()
        if not self._open:
            self._failures += 1
            if self._failures >= self.failure_threshold:
                self._trip(now)
        elif self._probe_started is not None or now - self._opened_at >= self.cooldown_seconds:
            # The probe (or a call in half_open) failed: another full cool-down.
            self._failures += 1
            self._trip(now)

    def release(self) -> None:
        """A let-through call ended without an outcome: free the probe slot if it held it."""
        self._probe_started = None

    def _trip(self, now: float) -> None:
        self._open = True
        self._opened_at = now
        self._probe_started = None

    def _probe_running(self) -> bool:
        # A probe that never reported (its caller vanished) must not keep the
        # breaker half-open for ever: after a cool-down another probe may go.
        return (
            self._probe_started is not None
            and self._clock() - self._probe_started < self.cooldown_seconds
        )

    def __repr__(self) -> str:
        return f"CircuitBreaker(state={self.state.value}, failures={self._failures})"


class Breakers:
    """One :class:`CircuitBreaker` per upstream instance id, created on first use.

    An instance not asked about for ``forget_after_seconds`` is forgotten
    (instances come and go with deployments), and at most ``max_instances``
    are kept, the least recently used going first.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cooldown_seconds: float = 5.0,
        clock: MonotonicClock = time.monotonic,
        forget_after_seconds: float = 3600.0,
        max_instances: int = 1024,
    ) -> None:
        if forget_after_seconds <= 0:
            raise ValueError("forget_after_seconds must be positive")
        if max_instances < 1:
            raise ValueError("max_instances must be at least 1")
        # Built once here so that bad thresholds fail at construction.
        CircuitBreaker(failure_threshold=failure_threshold, cooldown_seconds=cooldown_seconds)
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self.forget_after_seconds = forget_after_seconds
        self.max_instances = max_instances
        self._clock = clock
        # instance id -> (breaker, last seen); least recently seen first.
        self._breakers: OrderedDict[str, tuple[CircuitBreaker, float]] = OrderedDict()

    def get(self, instance_id: str) -> CircuitBreaker:
        """The breaker of ``instance_id`` (a new closed one for an instance not known)."""
        now = self._clock()
        entry = self._breakers.pop(instance_id, None)
        breaker = (
            entry[0]
            if entry is not None
            else CircuitBreaker(
                failure_threshold=self.failure_threshold,
                cooldown_seconds=self.cooldown_seconds,
                clock=self._clock,
            )
        )
        self._breakers[instance_id] = (breaker, now)
        self._forget(now)
        return breaker

    def states(self) -> dict[str, str]:
        """Instance id -> ``closed`` / ``open`` / ``half_open``, for metrics and debugging."""
        return {instance: entry[0].state.value for instance, entry in self._breakers.items()}

    def __len__(self) -> int:
        return len(self._breakers)

    def __contains__(self, instance_id: object) -> bool:
        return instance_id in self._breakers

    def _forget(self, now: float) -> None:
        while self._breakers:
            _, (_, last_seen) = next(iter(self._breakers.items()))
            too_many = len(self._breakers) > self.max_instances
            if not too_many and now - last_seen < self.forget_after_seconds:
                return
            self._breakers.popitem(last=False)


class RetryBudget:
    """How many retries the calls to one upstream may make (token bucket over a window).

    Every call deposits one request; every retry must withdraw. A retry is
    allowed while the retries of the last ``window_seconds`` stay within
    ``ratio`` times the requests of that window plus ``min_retries_per_second``
    times the window (the floor lets a quiet client still retry a little).
    """

    def __init__(
        self,
        *,
        ratio: float = 0.2,
        min_retries_per_second: float = 3.0,
        window_seconds: float = 10.0,
        clock: MonotonicClock = time.monotonic,
    ) -> None:
        if ratio < 0:
            raise ValueError("ratio must not be negative")
        if min_retries_per_second < 0:
            raise ValueError("min_retries_per_second must not be negative")
        if window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        self.ratio = ratio
        self.min_retries_per_second = min_retries_per_second
        self.window_seconds = window_seconds
        self._clock = clock
        # One slot per whole second of the window: [second, requests, retries].
        self._slots: deque[list[int]] = deque()

    def deposit(self) -> None:
        """Count one request (once per call, not per attempt)."""
        self._slot()[1] += 1

    def try_withdraw(self) -> bool:
        """Whether one more retry fits the budget; if it does it is counted."""
        if self.available() < 1:
            return False
        self._slot()[2] += 1
        return True

    def available(self) -> float:
        """How many retries the budget allows now."""
        self._expire(self._clock())
        requests = sum(slot[1] for slot in self._slots)
        retries = sum(slot[2] for slot in self._slots)
        floor = self.min_retries_per_second * self.window_seconds
        return self.ratio * requests + floor - retries

    def _slot(self) -> list[int]:
        now = self._clock()
        self._expire(now)
        second = int(now)
        if not self._slots or self._slots[-1][0] != second:
            self._slots.append([second, 0, 0])
        return self._slots[-1]

    def _expire(self, now: float) -> None:
        oldest = now - self.window_seconds
        while self._slots and self._slots[0][0] + 1 <= oldest:
            self._slots.popleft()
