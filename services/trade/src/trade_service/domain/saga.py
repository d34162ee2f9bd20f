"""Trade's part of the checkout saga: lock at order.created, consume when paid, release else.

Each operation takes the consumer's session and the event payload and returns
the payloads to publish. The caller (the order-events handler) commits the
session together with its inbox row and the outbox rows of those payloads, so
an operation's effects and its replies land exactly once.

Every operation is idempotent per order through the order's ``trade_holds``
row: the lock decides once (a second delivery gets the same answer), and
consume and release each move the hold out of ``locked`` with a guarded
UPDATE, so only one delivery finds it there and applies the effects.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.db import utc_now
from meshmart_common.events import (
    OrderCancelled,
    OrderCreated,
    OrderPaid,
    OrderRejected,
    PointsChanged,
    TradeLocked,
    TradeRejected,
)
from trade_service.domain.points import LedgerInconsistent, PointsService
from trade_service.domain.pricing import (
    choose_coupon,
    discount_cents,
    points_earned,
    points_problem,
)
from trade_service.repository.campaigns import CampaignRepository
from trade_service.repository.coupons import CouponRepository
from trade_service.repository.holds import HoldRepository
from trade_service.repository.models import (
    REASON_LENGTH,
    CouponStatus,
    HoldStatus,
    PointsReason,
    TradeHold,
)

logger = logging.getLogger("trade_service.saga")

VOID_REASON = "the order was rejected or cancelled before trade could lock it"


def _reply(hold: TradeHold) -> TradeLocked | TradeRejected:
    """The saga reply a decided hold stands for (the same on every delivery)."""
    status = HoldStatus(hold.status)
    if status is HoldStatus.REJECTED:
        return TradeRejected(order_id=hold.order_id, reason=hold.reason or "rejected")
    if status is HoldStatus.VOID:
        return TradeRejected(order_id=hold.order_id, reason=VOID_REASON)
    if status is HoldStatus.PENDING:
        # Only visible inside the deciding transaction, which never commits it.
        raise LedgerInconsistent(f"the hold of order {hold.order_id} was left undecided")
    return TradeLocked(
        order_id=hold.order_id,
        coupon_code=hold.coupon_code,
        discount_cents=hold.discount_cents,
        points_locked=hold.points_locked,
    )


async def lock_for_order(
    session: AsyncSession, event: OrderCreated, *, now: datetime | None = None
) -> TradeLocked | TradeRejected:
    """Lock the order's coupon and points, all or nothing; answer trade.locked or trade.rejected.

    The coupon must be one ``event.user_id`` holds, available, within its
    campaign's window, with the subtotal at its minimum spend and giving
    exactly ``event.discount_cents``; the points must be available and at
    most what the discount leaves to pay. A second delivery for the same
    order returns the first answer and locks nothing more.
    """
    at = now or utc_now()
    holds = HoldRepository(session)
    created = await holds.create_if_new(
        event.order_id, event.user_id, status=HoldStatus.PENDING, now=at
    )
    hold = await holds.get_latest(event.order_id)
    if hold is None:
        raise LedgerInconsistent(f"the hold of order {event.order_id} is missing")
    if not created:
        return _reply(hold)

    problem = await _lock(session, hold, event, at)
    if problem is None:
        hold.status = HoldStatus.LOCKED.value
    else:
        hold.status = HoldStatus.REJECTED.value
        hold.reason = problem[:REASON_LENGTH]
        logger.info("order %s rejected by trade: %s", event.order_id, problem)
    hold.updated_at = at
    await holds.flush()
    return _reply(hold)


async def _lock(
    session: AsyncSession, hold: TradeHold, event: OrderCreated, at: datetime
) -> str | None:
    """Check and lock; None when everything is held, else why nothing is."""
    if min(event.subtotal_cents, event.discount_cents, event.points_to_redeem) < 0:
        return "the order's amounts must not be negative"
    coupons = CouponRepository(session)
    points = PointsService(session, clock=lambda: at)
    coupon = None
    discount = 0
    # Spelled as the customer typed it, if the order did not take the quote's spelling.
    code = (event.coupon_code or "").strip().upper()
    if code:
        held = await coupons.available_with_code(event.user_id, code)
        choice = choose_coupon(code, held, event.subtotal_cents, at)
        if choice.coupon is None:
            return choice.problem
        coupon = choice.coupon
        discount = discount_cents(coupon.campaign, event.subtotal_cents)
    if discount != event.discount_cents:
        return f"the order's discount of {event.discount_cents} cents should be {discount} cents"
    if event.points_to_redeem:
        balance = await points.balance(event.user_id)
        problem = points_problem(
            event.points_to_redeem,
            available=balance.available,
            payable_cents=event.subtotal_cents - discount,
        )
        if problem is not None:
            return problem

    # Checked above on a read; each lock below is a guarded UPDATE, so a
    # concurrent order that got there first makes it fail instead of overdraw.
    if coupon is not None and not await coupons.lock(coupon.id, event.order_id):
        return f"coupon {coupon.code} was just used by another order"
    if event.points_to_redeem and not await points.lock(
        event.user_id, event.points_to_redeem, order_id=event.order_id
    ):
        if coupon is not None:
            await coupons.unlock(coupon.id, event.order_id, status=CouponStatus.AVAILABLE)
        return f"fewer than {event.points_to_redeem} points are available"
    hold.coupon_id = coupon.id if coupon is not None else None
    hold.coupon_code = coupon.code if coupon is not None else None
    hold.discount_cents = discount
    hold.points_locked = event.points_to_redeem
    return None


async def consume_for_order(
    session: AsyncSession, event: OrderPaid, *, now: datetime | None = None
) -> list[PointsChanged]:
    """Spend what the order holds and award points for its total; the points.changed to publish.

    The locked coupon becomes ``used`` (its campaign's ``used_count`` + 1),
    the locked points are redeemed (the balance drops), and
    ``floor(total_cents / 100)`` points are earned. A second delivery does nothing.
    """
    at = now or utc_now()
    holds = HoldRepository(session)
    points = PointsService(session, clock=lambda: at)
    changes: list[PointsChanged] = []
    if await holds.move(
        event.order_id, from_status=HoldStatus.LOCKED, to_status=HoldStatus.CONSUMED, now=at
    ):
        hold = await holds.get_latest(event.order_id)
        if hold is None:
            raise LedgerInconsistent(f"the hold of order {event.order_id} is missing")
        if hold.coupon_id is not None:
            await _use_coupon(session, hold.coupon_id, event.order_id, at)
        if hold.points_locked:
            changes.append(
                await points.redeem(hold.user_id, hold.points_locked, order_id=event.order_id)
            )
        if hold.points_locked != event.points_redeemed:
            logger.warning(
                "order %s paid with %s points redeemed but %s were locked",
                event.order_id,
                event.points_redeemed,
                hold.points_locked,
            )
    elif not await holds.create_if_new(
        event.order_id, event.user_id, status=HoldStatus.CONSUMED, now=at
    ):
        existing = await holds.get_latest(event.order_id)
        if existing is not None and existing.status != HoldStatus.CONSUMED:
            logger.warning(
                "order %s paid while its trade hold is %s; nothing consumed",
                event.order_id,
                existing.status,
            )
        return []
    else:
        logger.warning("order %s paid without a trade hold; awarding points only", event.order_id)

    earned = points_earned(event.total_cents)
    if earned:
        changes.append(
            await points.credit(event.user_id, earned, PointsReason.EARNED, order_id=event.order_id)
        )
    return changes


async def _use_coupon(session: AsyncSession, coupon_id: int, order_id: int, at: datetime) -> None:
    coupons = CouponRepository(session)
    coupon = await coupons.get(coupon_id)
    if coupon is None or not await coupons.mark_used(coupon_id, order_id, now=at):
        raise LedgerInconsistent(f"coupon {coupon_id} is not locked for order {order_id}")
    await CampaignRepository(session).count_use(coupon.campaign_id)


async def release_for_order(
    session: AsyncSession,
    event: OrderRejected | OrderCancelled,
    *,
    now: datetime | None = None,
) -> list[PointsChanged]:
    """Give back what the order holds: the coupon (expired if its campaign ended), the points.

    Points come back as ``refunded`` for a cancelled order and ``released``
    for a rejected one; the balance never moved, so there is no
    points.changed to publish (the list is empty). Releasing an order trade
    never locked changes nothing, and makes a later lock of it refuse.
    """
    at = now or utc_now()
    holds = HoldRepository(session)
    if not await holds.move(
        event.order_id, from_status=HoldStatus.LOCKED, to_status=HoldStatus.RELEASED, now=at
    ):
        await holds.create_if_new(event.order_id, event.user_id, status=HoldStatus.VOID, now=at)
        return []
    hold = await holds.get_latest(event.order_id)
    if hold is None:
        raise LedgerInconsistent(f"the hold of order {event.order_id} is missing")
    if hold.coupon_id is not None:
        await _give_back_coupon(session, hold.coupon_id, event.order_id, at)
    if hold.points_locked:
        await PointsService(session, clock=lambda: at).unlock(
            hold.user_id,
            hold.points_locked,
            order_id=event.order_id,
            refund=isinstance(event, OrderCancelled),
        )
    return []


async def _give_back_coupon(
    session: AsyncSession, coupon_id: int, order_id: int, at: datetime
) -> None:
    coupons = CouponRepository(session)
    coupon = await coupons.get(coupon_id)
    if coupon is None:
        raise LedgerInconsistent(f"coupon {coupon_id} of order {order_id} is missing")
    still_valid = at < coupon.campaign.ends_at
    status = CouponStatus.AVAILABLE if still_valid else CouponStatus.EXPIRED
    if not await coupons.unlock(coupon_id, order_id, status=status):
        raise LedgerInconsistent(f"coupon {coupon_id} is not locked for order {order_id}")
