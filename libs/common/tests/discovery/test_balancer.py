"""Round robin takes turns per service; least outstanding avoids busy instances."""

from __future__ import annotations

from collections import Counter

import pytest

from meshmart_common.discovery.balancer import LeastOutstanding, RoundRobin, make_balancer
from meshmart_common.discovery.base import Endpoint


def instances(service: str, count: int) -> tuple[Endpoint, ...]:
    return tuple(
        Endpoint(service, f"{service}-10.0.0.{i}-8000", f"10.0.0.{i}", 8000)
        for i in range(1, count + 1)
    )


def test_round_robin_takes_each_instance_in_turn() -> None:
    balancer = RoundRobin()
    product = instances("product", 3)
    chosen = [balancer.choose(product).instance_id for _ in range(6)]
    ids = [e.instance_id for e in product]
    assert chosen == ids + ids


def test_round_robin_keeps_a_turn_per_service() -> None:
    # Interleaved calls to two services with two instances each must still
    # spread over both instances of each (a shared counter would not).
    balancer = RoundRobin()
    product, trade = instances("product", 2), instances("trade", 2)
    chosen: Counter[str] = Counter()
    for _ in range(4):
        chosen[balancer.choose(product).instance_id] += 1
        chosen[balancer.choose(trade).instance_id] += 1
    assert set(chosen.values()) == {2}
    assert len(chosen) == 4


def test_round_robin_follows_a_changing_list() -> None:
    balancer = RoundRobin()
    three = instances("product", 3)
    balancer.choose(three)
    one = three[2:]
    assert [balancer.choose(one) for _ in range(3)] == [three[2]] * 3


def test_least_outstanding_prefers_the_idle_instance() -> None:
    balancer = LeastOutstanding()
    a, b, c = instances("product", 3)
    balancer.started(a)
    balancer.started(a)
    balancer.started(b)
    assert balancer.choose((a, b, c)) == c
    balancer.started(c)
    assert balancer.choose((a, b, c)) in (b, c)
    balancer.finished(a)
    balancer.finished(a)
    assert balancer.choose((a, b, c)) == a


def test_least_outstanding_breaks_ties_round_robin() -> None:
    balancer = LeastOutstanding()
    product = instances("product", 3)
    chosen = [balancer.choose(product) for _ in range(6)]
    assert Counter(chosen) == {e: 2 for e in product}


def test_least_outstanding_spreads_concurrent_calls() -> None:
    balancer = LeastOutstanding()
    product = instances("product", 2)
    in_flight = []
    for _ in range(4):
        endpoint = balancer.choose(product)
        balancer.started(endpoint)
        in_flight.append(endpoint)
    assert Counter(in_flight) == {product[0]: 2, product[1]: 2}
    assert [balancer.in_flight(e) for e in product] == [2, 2]
    for endpoint in in_flight:
        balancer.finished(endpoint)
    assert [balancer.in_flight(e) for e in product] == [0, 0]


def test_least_outstanding_counts_per_service() -> None:
    balancer = LeastOutstanding()
    product, trade = instances("product", 1), instances("trade", 1)
    balancer.started(product[0])
    assert balancer.in_flight(trade[0]) == 0
    assert balancer.in_flight(product[0]) == 1


def test_least_outstanding_forgets_instances_that_disappear() -> None:
    balancer = LeastOutstanding()
    a, b = instances("product", 2)
    balancer.started(a)
    balancer.started(a)
    # a leaves the healthy list: its count goes at the next choice.
    assert balancer.choose((b,)) == b
    assert balancer.in_flight(a) == 0
    # A call to a that was still in flight ends without effect.
    balancer.finished(a)
    assert balancer.in_flight(a) == 0
    # Should a come back, it starts from zero.
    balancer.started(b)
    assert balancer.choose((a, b)) == a


def test_a_finished_call_never_makes_a_count_negative() -> None:
    balancer = LeastOutstanding()
    (a,) = instances("product", 1)
    balancer.finished(a)
    balancer.started(a)
    balancer.finished(a)
    balancer.finished(a)
    assert balancer.in_flight(a) == 0


@pytest.mark.parametrize("balancer", [RoundRobin(), LeastOutstanding()])
def test_choosing_from_nothing_is_an_error(balancer: RoundRobin | LeastOutstanding) -> None:
    with pytest.raises(ValueError, match="no endpoint"):
        balancer.choose(())


def test_make_balancer_follows_the_setting() -> None:
    assert isinstance(make_balancer("round_robin"), RoundRobin)
    assert isinstance(make_balancer("least_outstanding"), LeastOutstanding)
    with pytest.raises(ValueError, match="unknown load balancer"):
        make_balancer("random")
