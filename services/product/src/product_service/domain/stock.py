"""Stock in the checkout saga: reserve an order's lines, release them, commit them.

The order service drives the saga with events (ARCHITECTURE.md, "Checkout
saga"); the handlers in product_service.events.handlers call this module in
the consumer's transaction, which also holds the inbox row, so each event has
its effect once. Replies and stock.changed events go to the outbox in that
same transaction.

- **reserve** (order.created): all lines or none. Each line is one
  conditional UPDATE (``on_hand - reserved >= quantity`` on a live product)
  inside a SAVEPOINT; if any line fails the savepoint is rolled back, so the
  lines reserved before it are given back, and stock.rejected names every
  product that could not be reserved. Otherwise a reservation row per product
  is stored and stock.reserved is sent.
- **release** (order.rejected, order.cancelled): the order's reservations
  still ``reserved`` go back to the available stock (``released``).
- **commit** (order.paid): the order's reservations still ``reserved`` leave
  on_hand and reserved (``committed``); the buyer's purchases are recorded
  and their reviews of those products marked verified.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.db import utc_now
from meshmart_common.events import (
    OrderCreated,
    OrderLine,
    OrderPaid,
    StockRejected,
    StockReserved,
)
from meshmart_common.messaging.outbox import EventPublisher
from product_service.events.publishing import StockChangeReason, publish, stock_changed
from product_service.repository.models import ReservationState, StockReservation
from product_service.repository.purchases import PurchaseRepository
from product_service.repository.reviews import ReviewRepository
from product_service.repository.stock import StockRepository

logger = logging.getLogger("product.stock")

MAX_ID = 2**63 - 1


class RejectionReason:
    """The ``reason`` of stock.rejected."""

    INSUFFICIENT_STOCK = "insufficient_stock"  # every product exists, some have too few units
    PRODUCT_UNAVAILABLE = "product_unavailable"  # some product is unknown or deleted
    EMPTY_ORDER = "empty_order"  # the order has no lines


class StockInconsistency(RuntimeError):
    """A counter does not hold what a reservation says it holds (never expected).

    Raised so the event is retried and finally parked as a dead letter for an
    operator, instead of being acknowledged with a wrong stock.
    """


@dataclass(frozen=True, slots=True)
class ReserveOutcome:
    """What reserving an order did: the reply sent, or None for a replay (nothing done)."""

    reply: StockReserved | StockRejected | None
    reserved: dict[int, int] = field(default_factory=dict)  # product id -> units


def merge_lines(lines: Iterable[OrderLine]) -> dict[int, int]:
    """Units wanted per product (lines of one product added up), by product id."""
    wanted: dict[int, int] = {}
    for line in lines:
        wanted[line.product_id] = wanted.get(line.product_id, 0) + line.quantity
    return dict(sorted(wanted.items()))


class _Shortfall(Exception):
    """Some lines could not be reserved: roll the savepoint back."""

    def __init__(self, product_ids: list[int]) -> None:
        super().__init__(product_ids)
        self.product_ids = product_ids


class StockService:
    """The saga's stock steps, in the caller's transaction."""

    def __init__(self, session: AsyncSession, publisher: EventPublisher) -> None:
        self.session = session
        self.publisher = publisher
        self.stock = StockRepository(session)
        self.purchases = PurchaseRepository(session)
        self.reviews = ReviewRepository(session)

    # --- reserve -------------------------------------------------------------------

    async def reserve_order(self, order: OrderCreated) -> ReserveOutcome:
        """Reserve every line of ``order`` or none; send stock.reserved or stock.rejected.

        An order that already has reservation rows (in any state) was handled
        before: nothing happens and nothing is sent again.
        """
        if await self.stock.has_reservations(order.order_id):
            logger.info("order %s: stock already reserved once; ignoring", order.order_id)
            return ReserveOutcome(reply=None)
        wanted = merge_lines(order.lines)
        if not wanted:
            return ReserveOutcome(
                reply=await self._reject(order.order_id, RejectionReason.EMPTY_ORDER, [])
            )

        now = utc_now()
        await self.stock.open_transaction()
        try:
            # The SAVEPOINT takes back the lines reserved before a failing one,
            # leaving the rest of the transaction (inbox row, reply) intact.
            async with self.session.begin_nested():
                short: list[int] = []
                # By product id: concurrent orders lock rows in one order (no deadlock).
                for product_id, quantity in wanted.items():
                    if not await self.stock.reserve_units(product_id, quantity, now=now):
                        short.append(product_id)
                if short:
                    raise _Shortfall(short)
        except _Shortfall as shortfall:
            unavailable = set(shortfall.product_ids) - await self.stock.live_product_ids(
                shortfall.product_ids
            )
            reason = (
                RejectionReason.PRODUCT_UNAVAILABLE
                if unavailable
                else RejectionReason.INSUFFICIENT_STOCK
            )
            return ReserveOutcome(
                reply=await self._reject(order.order_id, reason, shortfall.product_ids)
            )

        await self.stock.add_reservations(
            [
                StockReservation(
                    order_id=order.order_id,
                    product_id=product_id,
                    quantity=quantity,
                    state=ReservationState.RESERVED.value,
                    created_at=now,
                    updated_at=now,
                )
                for product_id, quantity in wanted.items()
            ]
        )
        for product_id in wanted:
            await self._stock_changed(product_id, StockChangeReason.RESERVED)
        reply = StockReserved(order_id=order.order_id)
        await publish(self.session, self.publisher, reply)
        logger.info("order %s: reserved %s", order.order_id, wanted)
        return ReserveOutcome(reply=reply, reserved=wanted)

    async def _reject(self, order_id: int, reason: str, product_ids: list[int]) -> StockRejected:
        reply = StockRejected(order_id=order_id, reason=reason, product_ids=product_ids)
        await publish(self.session, self.publisher, reply)
        logger.info("order %s: stock rejected (%s: %s)", order_id, reason, product_ids)
        return reply

    # --- release -------------------------------------------------------------------

    async def release_order(self, order_id: int) -> dict[int, int]:
        """Give back the order's units still reserved; return them per product (often none)."""
        now = utc_now()
        released: dict[int, int] = {}
        for reservation in await self.stock.reservations(order_id, state=ReservationState.RESERVED):
            if not await self.stock.move_reservation(
                reservation,
                from_state=ReservationState.RESERVED,
                to_state=ReservationState.RELEASED,
                now=now,
            ):
                continue  # released or committed meanwhile by another event
            if not await self.stock.release_units(
                reservation.product_id, reservation.quantity, now=now
            ):
                raise StockInconsistency(
                    f"product {reservation.product_id} has fewer than the "
                    f"{reservation.quantity} units order {order_id} reserved"
                )
            released[reservation.product_id] = reservation.quantity
            await self._stock_changed(reservation.product_id, StockChangeReason.RELEASED)
        if released:
            logger.info("order %s: released %s", order_id, released)
        return released

    # --- commit --------------------------------------------------------------------

    async def commit_order(self, paid: OrderPaid) -> dict[int, int]:
        """Sell the order's reserved units; record the purchases and verify reviews.

        Returns the units committed per product (none when the event is a
        replay or nothing was reserved).
        """
        now = utc_now()
        committed: dict[int, int] = {}
        for reservation in await self.stock.reservations(
            paid.order_id, state=ReservationState.RESERVED
        ):
            if not await self.stock.move_reservation(
                reservation,
                from_state=ReservationState.RESERVED,
                to_state=ReservationState.COMMITTED,
                now=now,
            ):
                continue
            if not await self.stock.commit_units(
                reservation.product_id, reservation.quantity, now=now
            ):
                raise StockInconsistency(
                    f"product {reservation.product_id} cannot give the "
                    f"{reservation.quantity} units order {paid.order_id} reserved"
                )
            committed[reservation.product_id] = reservation.quantity
            await self._stock_changed(reservation.product_id, StockChangeReason.COMMITTED)
        if committed:
            logger.info("order %s: committed %s", paid.order_id, committed)
        elif not await self.stock.reservations(paid.order_id, state=ReservationState.COMMITTED):
            logger.warning("order %s was paid but holds no reserved stock", paid.order_id)
        await self.record_purchases(paid)
        return committed

    async def record_purchases(self, paid: OrderPaid) -> None:
        """The buyer bought every product of the order: note it, verify their reviews."""
        if not 0 < paid.user_id <= MAX_ID:
            logger.warning("order %s: user id %s out of range", paid.order_id, paid.user_id)
            return
        bought = list(merge_lines(paid.lines))
        known = await self.stock.existing_product_ids(bought)
        now = utc_now()
        for product_id in bought:
            if product_id not in known:
                logger.warning("order %s: unknown product %s", paid.order_id, product_id)
                continue
            await self.purchases.record(paid.user_id, product_id, order_id=paid.order_id, now=now)
            await self.reviews.mark_verified(product_id, paid.user_id)

    # --- shared --------------------------------------------------------------------

    async def _stock_changed(self, product_id: int, reason: str) -> None:
        on_hand, reserved = await self.stock.counters(product_id)
        await publish(
            self.session, self.publisher, stock_changed(product_id, on_hand, reserved, reason)
        )
