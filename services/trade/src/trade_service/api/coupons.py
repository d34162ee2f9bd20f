"""Routes /api/v1/coupons: claim a coupon, list the caller's coupons."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from meshmart_common.auth import CurrentUser
from trade_service.api.deps import CouponsDep, CouponsReadDep, EventsDep, problems
from trade_service.api.schemas import CouponClaim, CouponRead
from trade_service.repository.models import CouponStatus

router = APIRouter(prefix="/coupons", tags=["coupons"])


@router.post(
    "/claim",
    status_code=status.HTTP_201_CREATED,
    response_model=CouponRead,
    responses=problems(
        400,
        401,
        404,
        409,
        422,
        s404="No campaign has this code",
        s409="Not claimable now (not started or ended), sold out, or the per-user limit reached",
    ),
)
async def claim_coupon(
    body: CouponClaim, coupons: CouponsDep, events: EventsDep, principal: CurrentUser
) -> CouponRead:
    """Claim a coupon of the campaign with this code; 409 when it cannot be claimed now."""
    claimed = await coupons.claim(principal.user_id, body.code)
    await events.publish(claimed.events)  # coupon.claimed, committed with the claim
    return CouponRead.of(claimed.coupon, coupons.status_of(claimed.coupon))


@router.get("", response_model=list[CouponRead], responses=problems(401, 422))
async def list_coupons(
    coupons: CouponsReadDep,
    principal: CurrentUser,
    coupon_status: Annotated[
        CouponStatus | None,
        Query(alias="status", description="only coupons in this status"),
    ] = None,
) -> list[CouponRead]:
    """List the caller's coupons, newest claim first (optionally of one status)."""
    held = await coupons.list_for_user(principal.user_id, coupon_status)
    return [CouponRead.of(coupon, coupons.status_of(coupon)) for coupon in held]
