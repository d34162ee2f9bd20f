"""The open-model, constant-arrival-rate load generator (as wrk2, k6's constant-arrival-rate).

Request ``i`` of a step at ``rate`` per second is *scheduled* at
``start + i / rate`` and sent then, whether or not earlier requests have been
answered: a slow server does not slow the arrivals down, so it cannot hide
its queue (the coordinated omission of closed-loop tools). Each latency is
measured from the scheduled time, so a request that waited for a free
connection, or for the generator itself, counts that wait.

A request that is not answered within ``timeout`` of its scheduled time is an
error ("timeout"), and so is any answer of 400 or more: a step is sustained
with under 1% errors (see :mod:`.stats`).
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, TypeVar

from meshmart_devstack.bench.http11 import ConnectionPool, ProtocolError
from meshmart_devstack.bench.stats import StepResult, late_median_ratio, per_second

T = TypeVar("T")
Outcome = tuple[str, Any]
"""What a job reports: "ok" or an error kind, and anything to keep (or None)."""
Job = Callable[[int], Awaitable[Outcome]]
"""One scheduled unit of work: a request, or a few (a checkout); gets its index."""

OK = "ok"
TIMEOUT = "timeout"
START_DELAY = 0.05
"""Seconds between arming a step and its first scheduled request."""
TICK = 0.001
"""The scheduler's shortest sleep. Event-loop timers have millisecond resolution
(uvloop rounds shorter delays to zero and would spin), so a request is sent up
to about 1 ms after its scheduled time; that lateness is counted in its latency."""


def status_outcome(status: int) -> str:
    """``ok`` for 1xx-3xx, otherwise the error kind ``HTTP <status>``."""
    return OK if status < 400 else f"HTTP {status}"


@dataclass
class StepRecords:
    """Everything one step measured, request by request (index = schedule order)."""

    rate: float
    duration: float
    wall_start: float
    """time.time() of the first scheduled send (offsets are relative to it)."""
    offsets: list[float]
    latencies: list[float | None]
    outcomes: list[str]
    kept: list[Any] = field(default_factory=list)

    def result(self, *, timeout: float, slack: float = 0.005, connections: int = 0) -> StepResult:
        """The step's statistics; answers later than ``timeout`` count as errors."""
        errors: dict[str, int] = {}
        ok_latencies: list[float] = []
        ok_offsets: list[float] = []
        timeline: list[float | None] = []
        for offset, latency, outcome in zip(
            self.offsets, self.latencies, self.outcomes, strict=True
        ):
            if outcome == OK and (latency is None or latency > timeout):
                outcome = TIMEOUT
            if outcome == OK and latency is not None:
                ok_latencies.append(latency)
                ok_offsets.append(offset)
                timeline.append(latency)
            else:
                errors[outcome] = errors.get(outcome, 0) + 1
                timeline.append(None)
        ratio = late_median_ratio(ok_offsets, ok_latencies, self.duration, slack)
        ok_latencies.sort()
        return StepResult(
            offered_rate=self.rate,
            duration=self.duration,
            scheduled=len(self.offsets),
            ok=len(ok_latencies),
            errors=errors,
            latencies=ok_latencies,
            late_median_ratio=round(ratio, 3),
            per_second=per_second(self.offsets, timeline, self.duration),
            connections=connections,
        )


async def run_step(job: Job, *, rate: float, duration: float, answer_within: float) -> StepRecords:
    """Run ``job`` ``rate`` times a second for ``duration`` seconds, on schedule.

    Waits for the answers until ``answer_within`` after the last scheduled send;
    jobs still running then are cancelled and recorded without a latency.
    """
    if rate <= 0 or duration <= 0:
        raise ValueError("rate and duration must be positive")
    loop = asyncio.get_running_loop()
    # perf_counter, not loop.time(): uvloop's clock ticks in whole milliseconds.
    clock = time.perf_counter
    count = max(1, math.floor(rate * duration))
    interval = 1.0 / rate
    offsets = [i * interval for i in range(count)]
    latencies: list[float | None] = [None] * count
    outcomes = [TIMEOUT] * count
    kept: list[Any] = [None] * count
    tasks: set[asyncio.Task[None]] = set()

    async def one(index: int, scheduled: float) -> None:
        try:
            outcome, keep = await job(index)
        except ProtocolError:
            outcome, keep = "connection error", None
        except OSError as exc:
            outcome, keep = f"connection error ({type(exc).__name__})", None
        latencies[index] = clock() - scheduled
        outcomes[index] = outcome
        kept[index] = keep

    start = clock() + START_DELAY
    wall_start = time.time() + (start - clock())
    # Collections would pause every request in flight; the step frees little.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        index = 0
        while index < count:
            now = clock()
            due = min(count, math.floor((now - start) * rate) + 1)
            while index < due:
                task = loop.create_task(one(index, start + offsets[index]))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                index += 1
            if index < count:
                await asyncio.sleep(max(TICK, start + offsets[index] - clock()))
        deadline = start + offsets[-1] + answer_within
        while tasks and clock() < deadline:
            await asyncio.wait(set(tasks), timeout=deadline - clock())
        for task in list(tasks):
            task.cancel()
        if tasks:
            await asyncio.wait(set(tasks))
    finally:
        if gc_was_enabled:
            gc.enable()
    return StepRecords(
        rate=rate,
        duration=duration,
        wall_start=wall_start,
        offsets=offsets,
        latencies=latencies,
        outcomes=outcomes,
        kept=kept,
    )


def warm_connections(rate: float) -> int:
    """Connections to open before a step: about what 20 ms of requests would keep busy."""
    return max(4, min(64, math.ceil(rate / 50)))


def get_job(pool: ConnectionPool, paths: list[str], headers: dict[str, str] | None = None) -> Job:
    """A job that GETs ``paths`` in turn (pre-encoded once)."""
    raws = [pool.encode("GET", path, headers) for path in paths]

    async def job(index: int) -> Outcome:
        response = await pool.request("GET", "", raw=raws[index % len(raws)])
        return status_outcome(response.status), None

    return job


async def measure_get(
    base_url: str,
    paths: list[str],
    *,
    rate: float,
    duration: float,
    answer_within: float = 1.0,
    max_connections: int = 256,
) -> StepResult:
    """One constant-rate step of GETs against ``base_url``; connections closed afterwards."""
    pool = ConnectionPool(base_url, max_connections=max_connections)
    try:
        with suppress(OSError):  # the requests will report it
            await pool.warm(warm_connections(rate))
        records = await run_step(
            get_job(pool, paths), rate=rate, duration=duration, answer_within=answer_within
        )
    finally:
        pool.close()
    return records.result(timeout=answer_within, connections=pool.opened)


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop when installed (the generator gets ~2x cheaper), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.run(main)
    return uvloop.run(main)
