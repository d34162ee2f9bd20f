"""The order status machine."""

from __future__ import annotations

import pytest

from order_service.domain.order_status import (
    FINAL_STATUSES,
    TRANSITIONS,
    OrderStatus,
    can_move,
    source_of,
)
from order_service.repository.models import ORDER_STATUSES

S = OrderStatus

LEGAL = {
    (S.PENDING, S.AWAITING_PAYMENT),
    (S.PENDING, S.REJECTED),
    (S.AWAITING_PAYMENT, S.PAID),
    (S.AWAITING_PAYMENT, S.CANCELLED),
    (S.PAID, S.SHIPPED),
    (S.SHIPPED, S.COMPLETED),
}


@pytest.mark.parametrize("current", list(OrderStatus))
@pytest.mark.parametrize("target", list(OrderStatus))
def test_only_the_documented_moves_are_legal(current: OrderStatus, target: OrderStatus) -> None:
    assert can_move(current, target) is ((current, target) in LEGAL)


def test_every_target_has_one_source() -> None:
    assert {target: source_of(target) for _, target in LEGAL} == {
        S.AWAITING_PAYMENT: S.PENDING,
        S.REJECTED: S.PENDING,
        S.PAID: S.AWAITING_PAYMENT,
        S.CANCELLED: S.AWAITING_PAYMENT,
        S.SHIPPED: S.PAID,
        S.COMPLETED: S.SHIPPED,
    }
    with pytest.raises(ValueError, match="PENDING"):
        source_of(S.PENDING)


def test_rejected_cancelled_and_completed_are_final() -> None:
    assert {S.REJECTED, S.CANCELLED, S.COMPLETED} == FINAL_STATUSES


def test_the_database_knows_every_status() -> None:
    assert set(ORDER_STATUSES) == {s.value for s in OrderStatus} == {s.value for s in TRANSITIONS}
