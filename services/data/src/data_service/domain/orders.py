"""Order statuses as analytics sees them, and the rule that they only move forward."""

from __future__ import annotations

from enum import StrEnum


class OrderStatus(StrEnum):
    """The order service's statuses."""

    PENDING = "PENDING"
    AWAITING_PAYMENT = "AWAITING_PAYMENT"
    PAID = "PAID"
    SHIPPED = "SHIPPED"
    COMPLETED = "COMPLETED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"


_PROGRESS = {
    OrderStatus.PENDING: 0,
    OrderStatus.AWAITING_PAYMENT: 1,
    OrderStatus.PAID: 2,
    OrderStatus.SHIPPED: 3,
    OrderStatus.COMPLETED: 4,
}

FINAL_STATUSES = frozenset({OrderStatus.REJECTED, OrderStatus.CANCELLED})
"""Statuses an order never leaves."""

SOLD_STATUSES = (OrderStatus.PAID, OrderStatus.SHIPPED, OrderStatus.COMPLETED)
"""Statuses of orders that count as sales (GMV, top products, paid orders)."""


def next_status(current: OrderStatus, reported: OrderStatus) -> OrderStatus:
    """The status after an event reports ``reported`` for an order now at ``current``.

    Events arrive in any order, so a status only ever moves forward along
    PENDING < AWAITING_PAYMENT < PAID < SHIPPED < COMPLETED; REJECTED and
    CANCELLED are final and win over any progress status. The order service
    never cancels or rejects a paid order, so with a well-behaved producer the
    result does not depend on the arrival order.
    """
    if current in FINAL_STATUSES:
        return current
    if reported in FINAL_STATUSES:
        return reported
    return reported if _PROGRESS[reported] > _PROGRESS[current] else current
