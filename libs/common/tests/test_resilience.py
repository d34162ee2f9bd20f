"""Circuit breakers and the retry budget, on a hand-moved clock."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from meshmart_common.resilience import Breakers, BreakerState, CircuitBreaker, RetryBudget


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def breaker(clock: Clock, *, threshold: int = 3, cooldown: float = 5.0) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=threshold, cooldown_seconds=cooldown, clock=clock)


def state(target: CircuitBreaker) -> BreakerState:
    # A function, not the property, so that mypy does not narrow it between steps.
    return target.state


def fail(target: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        assert target.acquire()
        target.record_failure()


# --- circuit breaker -------------------------------------------------------------


def test_a_breaker_stays_closed_below_the_threshold_of_consecutive_failures() -> None:
    clock = Clock()
    subject = breaker(clock)
    fail(subject, 2)
    assert state(subject) is BreakerState.CLOSED
    assert subject.consecutive_failures == 2
    assert subject.acquire()
    subject.record_success()
    # A success in between starts the count again.
    fail(subject, 2)
    assert state(subject) is BreakerState.CLOSED
    assert subject.allows()


def test_a_breaker_opens_after_the_threshold_and_rejects_calls_during_the_cooldown() -> None:
    clock = Clock()
    subject = breaker(clock)
    fail(subject, 3)
    assert state(subject) is BreakerState.OPEN
    assert not subject.allows()
    assert not subject.acquire()
    clock.advance(4.9)
    assert state(subject) is BreakerState.OPEN
    assert not subject.acquire()


def test_after_the_cooldown_a_half_open_breaker_lets_exactly_one_probe_through() -> None:
    clock = Clock()
    subject = breaker(clock)
    fail(subject, 3)
    clock.advance(5)
    assert state(subject) is BreakerState.HALF_OPEN
    assert subject.allows()
    assert subject.acquire()
    # The probe is running: everyone else waits for its outcome.
    assert not subject.allows()
    assert not subject.acquire()
    assert state(subject) is BreakerState.HALF_OPEN


def test_a_successful_probe_closes_the_breaker() -> None:
    clock = Clock()
    subject = breaker(clock)
    fail(subject, 3)
    clock.advance(5)
    assert subject.acquire()
    subject.record_success()
    assert state(subject) is BreakerState.CLOSED
    assert subject.consecutive_failures == 0
    assert subject.acquire()
    assert subject.acquire()


def test_a_failed_probe_opens_the_breaker_for_another_cooldown() -> None:
    clock = Clock()
    subject = breaker(clock)
    fail(subject, 3)
    clock.advance(6)
    assert subject.acquire()
    subject.record_failure()
    assert state(subject) is BreakerState.OPEN
    clock.advance(4)
    assert not subject.acquire()
    clock.advance(1)
    assert state(subject) is BreakerState.HALF_OPEN
    assert subject.acquire()


def test_a_released_probe_lets_the_next_call_probe() -> None:
    clock = Clock()
    subject = breaker(clock)
    fail(subject, 3)
    clock.advance(5)
    assert subject.acquire()
    subject.release()  # e.g. the caller was cancelled: nothing learnt
    assert state(subject) is BreakerState.HALF_OPEN
    assert subject.acquire()


def test_a_probe_that_never_reports_does_not_block_the_breaker_for_ever() -> None:
    clock = Clock()
    subject = breaker(clock)
    fail(subject, 3)
    clock.advance(5)
    assert subject.acquire()
    clock.advance(5)
    assert subject.acquire()


def test_late_answers_of_calls_from_before_it_opened_do_not_change_an_open_breaker() -> None:
    clock = Clock()
    subject = breaker(clock)
    for _ in range(5):
        assert subject.acquire()  # five calls in flight at once
    for _ in range(3):
        subject.record_failure()
    assert state(subject) is BreakerState.OPEN
    clock.advance(1)
    subject.record_success()
    subject.record_failure()
    assert state(subject) is BreakerState.OPEN
    clock.advance(4)
    # The cool-down still counts from when it opened.
    assert state(subject) is BreakerState.HALF_OPEN


@pytest.mark.parametrize(
    ("threshold", "cooldown"), [(0, 1.0), (1, 0.0), (1, -1.0)], ids=["threshold", "zero", "neg"]
)
def test_a_breaker_with_nonsense_settings_fails_at_construction(
    threshold: int, cooldown: float
) -> None:
    with pytest.raises(ValueError, match="must be"):
        CircuitBreaker(failure_threshold=threshold, cooldown_seconds=cooldown)
    with pytest.raises(ValueError, match="must be"):
        Breakers(failure_threshold=threshold, cooldown_seconds=cooldown)


# --- breakers per instance ------------------------------------------------------


def test_each_instance_has_its_own_breaker() -> None:
    clock = Clock()
    breakers = Breakers(failure_threshold=2, cooldown_seconds=5, clock=clock)
    fail(breakers.get("product-1"), 2)
    assert breakers.get("product-1") is breakers.get("product-1")
    assert breakers.get("product-2").allows()
    assert breakers.states() == {"product-1": "open", "product-2": "closed"}
    clock.advance(5)
    assert breakers.states()["product-1"] == "half_open"


def test_instances_not_seen_for_a_long_time_are_forgotten() -> None:
    clock = Clock()
    breakers = Breakers(failure_threshold=1, clock=clock, forget_after_seconds=60)
    fail(breakers.get("gone"), 1)
    breakers.get("kept")
    clock.advance(30)
    breakers.get("kept")
    clock.advance(31)
    breakers.get("new")
    assert "gone" not in breakers
    assert set(breakers.states()) == {"kept", "new"}
    # Forgotten means a fresh start should it come back.
    assert breakers.get("gone").state is BreakerState.CLOSED


def test_at_most_max_instances_are_kept_least_recently_seen_first_out() -> None:
    clock = Clock()
    breakers = Breakers(clock=clock, max_instances=3)
    for name in ("a", "b", "c"):
        breakers.get(name)
    breakers.get("a")
    breakers.get("d")
    assert len(breakers) == 3
    assert set(breakers.states()) == {"a", "c", "d"}


# --- retry budget ------------------------------------------------------------------


def test_the_budget_allows_the_ratio_of_recent_requests_plus_the_floor() -> None:
    clock = Clock()
    budget = RetryBudget(ratio=0.2, min_retries_per_second=0.1, window_seconds=10, clock=clock)
    for _ in range(20):
        budget.deposit()
    # 0.2 * 20 requests + 0.1/s * 10 s = 5 retries.
    assert [budget.try_withdraw() for _ in range(6)] == [True] * 5 + [False]
    budget.deposit()
    budget.deposit()
    budget.deposit()
    budget.deposit()
    budget.deposit()
    assert budget.try_withdraw()
    assert not budget.try_withdraw()


def test_an_exhausted_budget_refills_as_old_retries_leave_the_window() -> None:
    clock = Clock()
    budget = RetryBudget(ratio=0.0, min_retries_per_second=0.2, window_seconds=10, clock=clock)
    assert budget.try_withdraw()
    assert budget.try_withdraw()
    assert not budget.try_withdraw()
    clock.advance(5)
    assert not budget.try_withdraw()
    clock.advance(6)
    assert budget.try_withdraw()


def test_requests_outside_the_window_no_longer_earn_retries() -> None:
    clock = Clock()
    budget = RetryBudget(ratio=1.0, min_retries_per_second=0, window_seconds=10, clock=clock)
    for _ in range(10):
        budget.deposit()
    clock.advance(11)
    assert budget.available() == 0
    assert not budget.try_withdraw()


def test_a_budget_without_ratio_or_floor_allows_no_retry() -> None:
    budget = RetryBudget(ratio=0, min_retries_per_second=0)
    budget.deposit()
    assert not budget.try_withdraw()


@pytest.mark.parametrize(
    "make",
    [
        lambda: RetryBudget(ratio=-0.1),
        lambda: RetryBudget(min_retries_per_second=-1),
        lambda: RetryBudget(window_seconds=0),
    ],
    ids=["ratio", "floor", "window"],
)
def test_a_budget_with_nonsense_settings_fails_at_construction(
    make: Callable[[], RetryBudget],
) -> None:
    with pytest.raises(ValueError, match="must"):
        make()
