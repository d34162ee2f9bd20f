"""Exponential backoff with jitter, shared by the outbox relay and the consumers."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays that double from ``base`` up to ``cap``, each shortened by a random jitter.

    ``delay(n)`` lies in ``[d/2, d]`` with ``d = min(cap, base * 2**(n-1))``:
    the jitter spreads the retries of many replicas that failed together (the
    broker went away), and the lower half-bound keeps a retry from firing
    almost at once.
    """

    base: timedelta
    cap: timedelta
    random: Callable[[], float] = field(default=random.random, compare=False)

    def __post_init__(self) -> None:
        if self.base <= timedelta(0):
            raise ValueError("backoff base must be positive")
        if self.cap < self.base:
            raise ValueError("backoff cap must be at least the base")

    def delay(self, attempt: int) -> timedelta:
        """The wait before retry number ``attempt`` (1 = after the first failure)."""
        exponent = min(max(attempt, 1) - 1, 62)  # 2**62 already exceeds any cap
        full = min(self.cap.total_seconds(), self.base.total_seconds() * 2**exponent)
        return timedelta(seconds=full / 2 + self.random() * full / 2)
