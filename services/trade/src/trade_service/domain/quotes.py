"""Checkout quotes: what an order would cost with a coupon and points, checked now."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.db import utc_now
from meshmart_common.errors import ValidationFailed
from trade_service.domain.pricing import Quote, choose_coupon, discount_cents, points_problem
from trade_service.repository.coupons import CouponRepository
from trade_service.repository.points import PointsRepository


class QuoteService:
    """Prices a checkout for its caller; nothing is held (the lock comes with order.created)."""

    def __init__(self, session: AsyncSession, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.coupons = CouponRepository(session)
        self.points = PointsRepository(session)
        self.clock = clock

    async def quote(
        self,
        user_id: int,
        *,
        subtotal_cents: int,
        coupon_code: str | None = None,
        points_to_redeem: int = 0,
    ) -> Quote:
        """The price after the caller's coupon and points.

        ValidationFailed with a ``coupon_code`` error when the caller holds no
        usable coupon of that code (unknown, spent, locked, outside its
        window, below its minimum spend) and a ``points_to_redeem`` error when
        more points are asked than are available or than the rest can absorb.
        """
        errors: list[dict[str, Any]] = []
        discount = 0
        if coupon_code is not None:
            held = await self.coupons.available_with_code(user_id, coupon_code)
            choice = choose_coupon(coupon_code, held, subtotal_cents, self.clock())
            if choice.coupon is None:
                errors.append({"field": "coupon_code", "message": choice.problem})
            else:
                discount = discount_cents(choice.coupon.campaign, subtotal_cents)
        if points_to_redeem:
            account = await self.points.get_account(user_id)
            available = account.available if account is not None else 0
            problem = points_problem(
                points_to_redeem, available=available, payable_cents=subtotal_cents - discount
            )
            if problem is not None:
                errors.append({"field": "points_to_redeem", "message": problem})
        if errors:
            detail = "; ".join(str(error["message"]) for error in errors)
            raise ValidationFailed(f"Cannot apply to this order: {detail}.", errors=errors)
        return Quote(
            subtotal_cents=subtotal_cents,
            coupon_code=coupon_code,
            discount_cents=discount,
            points_to_redeem=points_to_redeem,
        )
