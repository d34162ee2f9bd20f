"""Orders after checkout: reading them, paying, cancelling, shipping, and the saga replies.

Every status change is one conditional UPDATE (``WHERE status = <the one
status it may start from>``), so of two concurrent changes (pay and cancel,
cancel and the payment timeout, two saga replies) exactly one wins and the
other sees the order as it now is. Each change returns the events it implies;
the caller hands them to the outbox (domain/outbox_port.py) in the same
session.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.errors import Conflict, Forbidden, NotFound
from meshmart_common.events import (
    OrderAwaitingPayment,
    OrderCancelled,
    OrderCompleted,
    OrderPaid,
    OrderPaymentTimeout,
    OrderRejected,
    OrderShipped,
    StockRejected,
    StockReserved,
    TradeLocked,
    TradeRejected,
)
from meshmart_common.events import (
    OrderLine as EventOrderLine,
)
from order_service.domain.clock import Clock
from order_service.domain.order_status import OrderStatus, source_of
from order_service.domain.outbox_port import OutgoingEvent
from order_service.repository.models import Order
from order_service.repository.orders import OrderRepository

logger = logging.getLogger("order.orders")

REASON_MAX_LENGTH = 255

PAYMENT_TIMEOUT = "payment_timeout"
CANCELLED_BY_CUSTOMER = "cancelled_by_customer"
CANCELLED_BY_ADMIN = "cancelled_by_admin"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts on orders: a customer sees and acts on their own, an admin on all."""

    user_id: int
    is_admin: bool = False


@dataclass(frozen=True, slots=True)
class OrderOutcome:
    """An order after a change, and the events the change implies."""

    order: Order
    events: list[OutgoingEvent]


_ACTIONS: dict[OrderStatus, str] = {
    OrderStatus.AWAITING_PAYMENT: "moved on by the saga",
    OrderStatus.PAID: "paid",
    OrderStatus.CANCELLED: "cancelled",
    OrderStatus.SHIPPED: "shipped",
    OrderStatus.COMPLETED: "completed",
    OrderStatus.REJECTED: "rejected",
}


def _event_lines(order: Order) -> list[EventOrderLine]:
    return [
        EventOrderLine(
            product_id=line.product_id,
            quantity=line.quantity,
            unit_price_cents=line.unit_price_cents,
        )
        for line in order.lines
    ]


def _reason(text: str) -> str:
    return text[:REASON_MAX_LENGTH]


class OrderService:
    """Reads orders and moves them through their status machine."""

    def __init__(self, session: AsyncSession, *, clock: Clock, payment_timeout: timedelta) -> None:
        self.orders = OrderRepository(session)
        self.clock = clock
        self.payment_timeout = payment_timeout

    # --- reads ------------------------------------------------------------------------

    async def get(self, actor: Actor, order_id: int) -> Order:
        """The order if the actor may see it (own, or any for an admin); NotFound otherwise."""
        order = await self.orders.get(order_id)
        if order is None or (order.user_id != actor.user_id and not actor.is_admin):
            # Someone else's order is "not found", so ids reveal nothing.
            raise NotFound(f"Order {order_id} does not exist.")
        return order

    async def search(
        self,
        actor: Actor,
        *,
        user_id: int | None = None,
        status: OrderStatus | None = None,
        offset: int = 0,
        limit: int = 20,
    ) -> tuple[Sequence[Order], int]:
        """One page of orders, newest first, and how many match.

        A customer lists their own (``user_id`` may only name themselves:
        Forbidden otherwise); an admin lists everyone's, or one user's.
        """
        if not actor.is_admin:
            if user_id is not None and user_id != actor.user_id:
                raise Forbidden("Only admins can list the orders of other users.")
            user_id = actor.user_id
        return await self.orders.search(
            user_id=user_id,
            status=status.value if status else None,
            offset=offset,
            limit=limit,
        )

    # --- customer and admin actions -------------------------------------------------

    async def pay(self, actor: Actor, order_id: int) -> OrderOutcome:
        """Pay for the order (simulated: always succeeds) -> PAID, order.paid.

        Only its customer pays (an admin gets Forbidden), only while
        AWAITING_PAYMENT and before ``pay_by`` (Conflict otherwise).
        """
        order = await self.get(actor, order_id)
        if order.user_id != actor.user_id:
            raise Forbidden("Only the customer who placed the order can pay for it.")
        now = self.clock.now()
        if (
            order.status == OrderStatus.AWAITING_PAYMENT
            and order.pay_by is not None
            and order.pay_by <= now
        ):
            raise Conflict(
                f"The time to pay for order {order_id} ran out at "
                f"{order.pay_by.isoformat()}; it is being cancelled."
            )
        order = await self._move(order, OrderStatus.PAID, {"paid_at": now}, now=now)
        paid_at = order.paid_at or now
        return OrderOutcome(
            order,
            [
                OutgoingEvent(
                    OrderPaid(
                        order_id=order.id,
                        user_id=order.user_id,
                        lines=_event_lines(order),
                        total_cents=order.total_cents,
                        discount_cents=order.discount_cents,
                        points_redeemed=order.points_redeemed,
                        coupon_code=order.coupon_code,
                        paid_at=paid_at,
                    )
                )
            ],
        )

    async def cancel(self, actor: Actor, order_id: int) -> OrderOutcome:
        """Cancel the order (its customer or an admin) while AWAITING_PAYMENT -> order.cancelled.

        A PENDING order cannot be cancelled yet (Conflict): its holds are still
        being taken; once it awaits payment it can.
        """
        order = await self.get(actor, order_id)
        reason = CANCELLED_BY_CUSTOMER if order.user_id == actor.user_id else CANCELLED_BY_ADMIN
        return await self._cancel(order, reason)

    async def ship(self, actor: Actor, order_id: int) -> OrderOutcome:
        """Ship a PAID order (admin) -> SHIPPED, order.shipped."""
        order = await self._for_admin(actor, order_id)
        now = self.clock.now()
        order = await self._move(order, OrderStatus.SHIPPED, {"shipped_at": now}, now=now)
        return OrderOutcome(
            order, [OutgoingEvent(OrderShipped(order_id=order.id, user_id=order.user_id))]
        )

    async def complete(self, actor: Actor, order_id: int) -> OrderOutcome:
        """Complete a SHIPPED order (admin) -> COMPLETED, order.completed."""
        order = await self._for_admin(actor, order_id)
        now = self.clock.now()
        order = await self._move(order, OrderStatus.COMPLETED, {"completed_at": now}, now=now)
        return OrderOutcome(
            order, [OutgoingEvent(OrderCompleted(order_id=order.id, user_id=order.user_id))]
        )

    async def _for_admin(self, actor: Actor, order_id: int) -> Order:
        if not actor.is_admin:
            raise Forbidden("This action needs the admin role.")
        return await self.get(actor, order_id)

    async def _cancel(self, order: Order, reason: str) -> OrderOutcome:
        now = self.clock.now()
        order = await self._move(
            order,
            OrderStatus.CANCELLED,
            {"cancelled_at": now, "cancellation_reason": reason},
            now=now,
        )
        return OrderOutcome(
            order,
            [
                OutgoingEvent(
                    OrderCancelled(
                        order_id=order.id,
                        user_id=order.user_id,
                        reason=reason,
                        cancelled_at=order.cancelled_at or now,
                    )
                )
            ],
        )

    async def _move(
        self, order: Order, target: OrderStatus, values: dict[str, Any], *, now: datetime
    ) -> Order:
        """Move ``order`` to ``target`` if it is still in the one status that leads there."""
        expected = source_of(target)
        moved = await self.orders.update_if_status(
            order.id, expected.value, {**values, "status": target.value, "updated_at": now}
        )
        current = await self.orders.get(order.id)
        if current is None:  # pragma: no cover - orders are never deleted
            raise NotFound(f"Order {order.id} does not exist.")
        if not moved:
            raise Conflict(
                f"Order {order.id} is {current.status}; only an order that is "
                f"{expected.value} can be {_ACTIONS[target]}."
            )
        return current

    # --- saga replies ------------------------------------------------------------------
    #
    # Called by the event handlers, each in the transaction that also records
    # the event in the inbox. Every reply is safe to receive twice, late, or
    # for an order this service does not know: those are logged no-ops.

    async def on_stock_reserved(self, event: StockReserved) -> list[OutgoingEvent]:
        """Product holds the stock: note it; with trade's hold too -> AWAITING_PAYMENT."""
        return await self._hold_in(event.order_id, "stock_ok", event.event_type)

    async def on_trade_locked(self, event: TradeLocked) -> list[OutgoingEvent]:
        """Trade holds coupon and points: note it; with the stock too -> AWAITING_PAYMENT.

        A lock that differs from the quote the order was priced with (another
        discount or number of points) rejects the order: it must not be paid
        at a total nobody holds.
        """
        order = await self.orders.get(event.order_id)
        if order is None:
            logger.warning("%s for unknown order %s ignored", event.event_type, event.order_id)
            return []
        if order.status != OrderStatus.PENDING:
            return self._late(order, event.event_type)
        if (
            event.discount_cents != order.discount_cents
            or event.points_locked != order.points_redeemed
        ):
            return await self._reject(
                event.order_id,
                f"trade_mismatch: locked a discount of {event.discount_cents} cents and "
                f"{event.points_locked} points, the order was priced with "
                f"{order.discount_cents} cents and {order.points_redeemed} points",
                event.event_type,
            )
        return await self._hold_in(event.order_id, "trade_ok", event.event_type)

    async def on_stock_rejected(self, event: StockRejected) -> list[OutgoingEvent]:
        """Product cannot reserve the stock: a PENDING order -> REJECTED, order.rejected."""
        products = ", ".join(str(product_id) for product_id in event.product_ids)
        reason = f"stock_rejected: {event.reason}" + (f" (products {products})" if products else "")
        return await self._reject(event.order_id, reason, event.event_type)

    async def on_trade_rejected(self, event: TradeRejected) -> list[OutgoingEvent]:
        """Trade cannot lock coupon or points: a PENDING order -> REJECTED, order.rejected."""
        return await self._reject(
            event.order_id, f"trade_rejected: {event.reason}", event.event_type
        )

    async def on_payment_timeout(self, event: OrderPaymentTimeout) -> list[OutgoingEvent]:
        """The time to pay is up: an order still AWAITING_PAYMENT -> CANCELLED, order.cancelled.

        An order paid (or cancelled) in time is left alone.
        """
        order = await self.orders.get(event.order_id)
        if order is None:
            logger.warning("%s for unknown order %s ignored", event.event_type, event.order_id)
            return []
        if order.status != OrderStatus.AWAITING_PAYMENT:
            logger.info(
                "%s for order %s ignored: it is %s", event.event_type, order.id, order.status
            )
            return []
        try:
            outcome = await self._cancel(order, PAYMENT_TIMEOUT)
        except Conflict:  # paid or cancelled a moment ago
            logger.info("%s for order %s lost to a concurrent change", event.event_type, order.id)
            return []
        return outcome.events

    async def _hold_in(self, order_id: int, flag: str, event_type: str) -> list[OutgoingEvent]:
        now = self.clock.now()
        recorded = await self.orders.update_if_status(
            order_id, OrderStatus.PENDING.value, {flag: True, "updated_at": now}
        )
        if not recorded:
            order = await self.orders.get(order_id)
            if order is None:
                logger.warning("%s for unknown order %s ignored", event_type, order_id)
                return []
            return self._late(order, event_type)
        pay_by = now + self.payment_timeout
        advanced = await self.orders.advance_when_held(
            order_id,
            OrderStatus.PENDING.value,
            {
                "status": OrderStatus.AWAITING_PAYMENT.value,
                "pay_by": pay_by,
                "updated_at": now,
            },
        )
        if not advanced:
            return []  # the other hold is not in yet
        order = await self.orders.get(order_id)
        if order is None:  # pragma: no cover - orders are never deleted
            return []
        return [
            OutgoingEvent(
                OrderAwaitingPayment(
                    order_id=order.id,
                    user_id=order.user_id,
                    total_cents=order.total_cents,
                    pay_by=pay_by,
                )
            ),
            OutgoingEvent(OrderPaymentTimeout(order_id=order.id), deliver_at=pay_by),
        ]

    async def _reject(self, order_id: int, reason: str, event_type: str) -> list[OutgoingEvent]:
        reason = _reason(reason)
        rejected = await self.orders.update_if_status(
            order_id,
            OrderStatus.PENDING.value,
            {
                "status": OrderStatus.REJECTED.value,
                "rejection_reason": reason,
                "updated_at": self.clock.now(),
            },
        )
        order = await self.orders.get(order_id)
        if order is None:
            logger.warning("%s for unknown order %s ignored", event_type, order_id)
            return []
        if not rejected:
            return self._late(order, event_type)
        logger.info("order %s rejected: %s", order.id, reason)
        return [
            OutgoingEvent(OrderRejected(order_id=order.id, user_id=order.user_id, reason=reason))
        ]

    def _late(self, order: Order, event_type: str) -> list[OutgoingEvent]:
        logger.info("%s for order %s ignored: it is %s", event_type, order.id, order.status)
        return []
