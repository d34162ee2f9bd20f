"""How long an account stays locked after consecutive failed logins."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

# 2**20 times any base already exceeds every allowed cap; bounding the
# exponent keeps the arithmetic small however many failures pile up.
_MAX_DOUBLINGS = 20


@dataclass(frozen=True, slots=True)
class LoginThrottle:
    """After ``max_failures`` consecutive failures, lock for ``base`` seconds, doubling each
    further failure, never longer than ``cap`` seconds."""

    max_failures: int
    base_seconds: int
    cap_seconds: int

    def lock_window(self, consecutive_failures: int) -> timedelta | None:
        """The lock that ``consecutive_failures`` earn, or None below the threshold."""
        if consecutive_failures < self.max_failures:
            return None
        doublings = min(consecutive_failures - self.max_failures, _MAX_DOUBLINGS)
        return timedelta(seconds=min(self.base_seconds * 2**doublings, self.cap_seconds))

    @staticmethod
    def retry_after(locked_until: datetime | None, now: datetime) -> int | None:
        """Whole seconds until ``locked_until``, or None when not locked at ``now``."""
        if locked_until is None or locked_until <= now:
            return None
        return max(1, math.ceil((locked_until - now).total_seconds()))
