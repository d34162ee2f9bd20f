"""Latency statistics of one load step, and whether the server kept up with it.

Percentiles are nearest-rank (the smallest sample with at least p% of the
samples at or below it), as HdrHistogram and wrk2 report them: p100 is the
maximum, and every reported value is a latency that was really observed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

REPORTED_PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9, 100.0)
MAX_ERROR_RATE = 0.01
"""A step with this share of errors or more is not sustained."""
MIN_THROUGHPUT_RATIO = 0.97
"""A sustained step completes at least this share of what it offered, in time."""


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile (0 < p <= 100) of ascending ``sorted_values``."""
    if not sorted_values:
        return math.nan
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be within 0..100, not {p}")
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def spectrum(sorted_values: Sequence[float], points: int = 60) -> list[tuple[float, float]]:
    """(percentile, value) pairs spread evenly on a log scale of 1/(1-p), up to 99.99%.

    This is the shape HdrHistogram plots: the tail gets as much room as the body.
    """
    if not sorted_values:
        return []
    pairs: list[tuple[float, float]] = []
    top = 4.0  # 10^-4 left: 99.99%
    for step in range(points + 1):
        p = 100.0 * (1.0 - 10 ** (-top * step / points))
        pairs.append((round(p, 4), percentile(sorted_values, max(p, 1e-9))))
    pairs.append((100.0, sorted_values[-1]))
    return pairs


@dataclass
class StepResult:
    """What happened during one constant-rate step.

    Latencies are seconds from each request's *scheduled* send time to its
    answer, so time spent queued behind a slow server (or a busy generator)
    is counted, as wrk2 counts it.
    """

    offered_rate: float
    duration: float
    scheduled: int
    ok: int
    errors: dict[str, int]
    latencies: list[float] = field(repr=False)
    """Latencies of the successful requests, ascending (seconds)."""
    late_median_ratio: float = 1.0
    """Median latency of the last fifth of the step over that of the first fifth."""
    per_second: list[dict[str, float]] = field(default_factory=list, repr=False)
    """Per second of the schedule: requests sent, answered ok, and their p99 (ms)."""
    connections: int = 0

    @property
    def error_count(self) -> int:
        """Requests that failed, timed out or never got an answer."""
        return sum(self.errors.values())

    @property
    def error_rate(self) -> float:
        """Share of scheduled requests that failed."""
        return self.error_count / self.scheduled if self.scheduled else 0.0

    @property
    def throughput(self) -> float:
        """Successful requests per second of the step."""
        return self.ok / self.duration if self.duration else 0.0

    def latency_ms(self, p: float) -> float:
        """The ``p``-th percentile latency in milliseconds."""
        return percentile(self.latencies, p) * 1000.0

    @property
    def sustained(self) -> bool:
        """Under 1% errors, (nearly) all of the offered rate served, and no growing queue.

        In an open model an overloaded server shows up as a queue that keeps
        growing: latency at the end of the step far above latency at its start.
        """
        return (
            self.error_rate < MAX_ERROR_RATE
            and self.throughput >= MIN_THROUGHPUT_RATIO * self.offered_rate
            and self.late_median_ratio <= 3.0
        )

    def summary(self) -> dict[str, Any]:
        """JSON-ready numbers (latencies in ms), without the raw samples."""
        data = asdict(self)
        data.pop("latencies")
        data.update(
            throughput=round(self.throughput, 1),
            error_rate=round(self.error_rate, 5),
            sustained=self.sustained,
            latency_ms={f"p{p:g}": round(self.latency_ms(p), 3) for p in REPORTED_PERCENTILES},
            spectrum_ms=[(p, round(v * 1000.0, 3)) for p, v in spectrum(self.latencies)],
        )
        return data


def late_median_ratio(
    offsets: Sequence[float], latencies: Sequence[float], duration: float, slack: float
) -> float:
    """How much worse the median latency got from the first to the last fifth of a step.

    ``offsets`` are the scheduled send times (seconds from the step's start)
    of the requests whose ``latencies`` are given. ``slack`` seconds are added
    to both medians, so that noise at sub-millisecond latencies (0.4 ms vs
    1.3 ms) does not read as a queue.
    """
    fifth = duration / 5
    early = sorted(lat for off, lat in zip(offsets, latencies, strict=True) if off < fifth)
    late = sorted(
        lat for off, lat in zip(offsets, latencies, strict=True) if off >= duration - fifth
    )
    if not early or not late:
        return 1.0
    return (percentile(late, 50) + slack) / (percentile(early, 50) + slack)


def per_second(
    offsets: Sequence[float], latencies: Sequence[float | None], duration: float
) -> list[dict[str, float]]:
    """Per whole second of the schedule: sent, ok (latency not None) and the p99 in ms."""
    seconds = max(1, math.ceil(duration))
    buckets: list[list[float]] = [[] for _ in range(seconds)]
    sent = [0] * seconds
    for offset, latency in zip(offsets, latencies, strict=True):
        index = min(seconds - 1, int(offset))
        sent[index] += 1
        if latency is not None:
            buckets[index].append(latency)
    rows = []
    for index, bucket in enumerate(buckets):
        bucket.sort()
        p99 = percentile(bucket, 99) * 1000.0 if bucket else math.nan
        rows.append({"second": index, "sent": sent[index], "ok": len(bucket), "p99_ms": p99})
    return rows


Trial = tuple[float, bool]
"""A step of a rate search: the offered rate and whether it was sustained."""


def highest_sustained(trials: Sequence[Trial]) -> float | None:
    """The highest rate that was sustained, if any."""
    return max((rate for rate, sustained in trials if sustained), default=None)


def next_rate(
    trials: Sequence[Trial], *, start: float, growth: float, precision: float
) -> float | None:
    """The rate to try next in a search for the highest sustained rate, or None when done.

    Grows by ``growth`` from ``start`` until a step fails, then bisects between
    the best pass and the lowest fail above it until they are within
    ``precision`` (relative) of each other. When even ``start`` fails it
    shrinks by ``growth`` instead, down to 1 per second.
    """
    if not trials:
        return start
    best = highest_sustained(trials)
    worst = min(
        (rate for rate, sustained in trials if not sustained and (best is None or rate > best)),
        default=None,
    )
    if worst is None:
        return (best or start) * growth
    if best is None:
        lower = worst / growth
        return lower if lower >= 1 else None
    if worst - best <= precision * best:
        return None
    return (best + worst) / 2
