"""The checkout money rules, shared by the quote and by the lock at order creation.

- a coupon's discount is its fixed cents, or ``floor(subtotal * percent / 100)``,
  never more than the subtotal;
- 1 point redeems 1 cent, at most the points available and at most what is
  left of the subtotal after the discount;
- 1 point is earned per whole currency unit (100 cents) of a paid total.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from trade_service.repository.models import Coupon, CouponCampaign, DiscountType

CENTS_PER_POINT = 1
CENTS_PER_EARNED_POINT = 100


@dataclass(frozen=True, slots=True)
class CouponChoice:
    """The coupon a checkout would spend, or why none of the caller's coupons fits."""

    coupon: Coupon | None
    problem: str | None


@dataclass(frozen=True, slots=True)
class Quote:
    """What an order costs after its coupon and points."""

    subtotal_cents: int
    coupon_code: str | None
    discount_cents: int
    points_to_redeem: int

    @property
    def points_discount_cents(self) -> int:
        """The cents the redeemed points take off."""
        return self.points_to_redeem * CENTS_PER_POINT

    @property
    def total_cents(self) -> int:
        """What is left to pay."""
        return self.subtotal_cents - self.discount_cents - self.points_discount_cents


def discount_cents(campaign: CouponCampaign, subtotal_cents: int) -> int:
    """The campaign's discount on ``subtotal_cents``, at most the subtotal."""
    if campaign.discount_type == DiscountType.PERCENT:
        discount = subtotal_cents * campaign.discount_value // 100
    else:
        discount = campaign.discount_value
    return max(0, min(discount, subtotal_cents))


def points_earned(total_cents: int) -> int:
    """Points awarded for paying ``total_cents``: one per whole currency unit."""
    return max(0, total_cents) // CENTS_PER_EARNED_POINT


def _unusable(coupon: Coupon, subtotal_cents: int, now: datetime) -> str | None:
    campaign = coupon.campaign
    if now < campaign.starts_at:
        starts = campaign.starts_at
        return f"coupon {coupon.code} cannot be used before {starts:%Y-%m-%d %H:%M} UTC"
    if now >= campaign.ends_at:
        return f"coupon {coupon.code} has expired"
    if subtotal_cents < campaign.min_spend_cents:
        return f"coupon {coupon.code} needs a subtotal of at least {campaign.min_spend_cents} cents"
    return None


def choose_coupon(
    code: str, held: Sequence[Coupon], subtotal_cents: int, now: datetime
) -> CouponChoice:
    """Pick the first of the caller's available coupons of ``code`` that fits the order."""
    if not held:
        return CouponChoice(None, f"you hold no available coupon {code}")
    problem: str | None = None
    for coupon in held:
        problem = _unusable(coupon, subtotal_cents, now)
        if problem is None:
            return CouponChoice(coupon, None)
    return CouponChoice(None, problem)


def points_problem(points: int, *, available: int, payable_cents: int) -> str | None:
    """Why ``points`` cannot be redeemed on an order with ``payable_cents`` left, or None."""
    if points > available:
        return f"only {available} points are available"
    if points * CENTS_PER_POINT > payable_cents:
        return f"at most {payable_cents // CENTS_PER_POINT} points can be redeemed on this order"
    return None
