"""The order status machine: which status may follow which."""

from __future__ import annotations

from enum import StrEnum


class OrderStatus(StrEnum):
    """Where an order is in its life."""

    PENDING = "PENDING"
    """Stored at checkout; product and trade are holding stock, coupon and points."""
    AWAITING_PAYMENT = "AWAITING_PAYMENT"
    """Both holds are in; the customer can pay until ``pay_by``."""
    PAID = "PAID"
    SHIPPED = "SHIPPED"
    COMPLETED = "COMPLETED"
    REJECTED = "REJECTED"
    """Stock or trade said no while the order was PENDING (final)."""
    CANCELLED = "CANCELLED"
    """Cancelled, or not paid in time, while AWAITING_PAYMENT (final)."""


TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING: frozenset({OrderStatus.AWAITING_PAYMENT, OrderStatus.REJECTED}),
    OrderStatus.AWAITING_PAYMENT: frozenset({OrderStatus.PAID, OrderStatus.CANCELLED}),
    OrderStatus.PAID: frozenset({OrderStatus.SHIPPED}),
    OrderStatus.SHIPPED: frozenset({OrderStatus.COMPLETED}),
    OrderStatus.COMPLETED: frozenset(),
    OrderStatus.REJECTED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
}
"""Every legal move; anything else is refused."""

FINAL_STATUSES = frozenset(status for status, nexts in TRANSITIONS.items() if not nexts)


def can_move(current: OrderStatus, target: OrderStatus) -> bool:
    """True when an order in ``current`` may move to ``target``."""
    return target in TRANSITIONS[current]


def source_of(target: OrderStatus) -> OrderStatus:
    """The one status an order must be in to move to ``target``."""
    sources = [status for status, nexts in TRANSITIONS.items() if target in nexts]
    if len(sources) != 1:
        raise ValueError(f"no single status leads to {target}")
    return sources[0]
