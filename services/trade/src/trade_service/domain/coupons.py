"""Coupons: customers claim them from campaigns and list the ones they hold."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.db import utc_now
from meshmart_common.errors import Conflict, NotFound
from meshmart_common.events import CouponClaimed, EventData
from trade_service.repository.campaigns import CampaignRepository
from trade_service.repository.coupons import CouponRepository
from trade_service.repository.errors import DuplicateKey
from trade_service.repository.models import Coupon, CouponCampaign, CouponStatus


@dataclass(frozen=True, slots=True)
class Claimed:
    """A claimed coupon and the events to publish with it."""

    coupon: Coupon
    events: list[EventData] = field(default_factory=list)


def visible_status(coupon: Coupon, now: datetime) -> CouponStatus:
    """The coupon's status as its holder sees it: an unused coupon of an ended campaign expired."""
    status = CouponStatus(coupon.status)
    if status is CouponStatus.AVAILABLE and now >= coupon.campaign.ends_at:
        return CouponStatus.EXPIRED
    return status


def _limit_reached(campaign: CouponCampaign) -> Conflict:
    return Conflict(
        f"You already hold the {campaign.per_user_limit} coupon(s) of {campaign.code} "
        "allowed per customer."
    )


class CouponService:
    """Claims and lists a customer's coupons."""

    def __init__(self, session: AsyncSession, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.campaigns = CampaignRepository(session)
        self.coupons = CouponRepository(session)
        self.clock = clock

    async def claim(self, user_id: int, code: str) -> Claimed:
        """Claim one coupon of campaign ``code``.

        NotFound: no such campaign. Conflict: outside its window, sold out, or
        the per-user limit reached. The campaign's claim counter is raised by
        a guarded UPDATE and the claim number is unique per user, so neither
        limit can be overrun by concurrent claims.
        """
        campaign = await self.campaigns.get_by_code(code)
        if campaign is None:
            raise NotFound(f"No coupon campaign has code {code!r}.")
        now = self.clock()
        if now < campaign.starts_at:
            raise Conflict(f"Campaign {code} is not claimable now: it has not started.")
        if now >= campaign.ends_at:
            raise Conflict(f"Campaign {code} is not claimable now: it has ended.")
        if await self.coupons.count_claims(campaign.id, user_id) >= campaign.per_user_limit:
            raise _limit_reached(campaign)
        if not await self.campaigns.count_claim(campaign.id):
            raise Conflict(f"Campaign {code} is sold out.")
        # Counted again after the UPDATE above, which waited for any concurrent
        # claim of this campaign to finish; the unique claim number settles the rest.
        claims = await self.coupons.count_claims(campaign.id, user_id)
        if claims >= campaign.per_user_limit:
            raise _limit_reached(campaign)
        coupon = Coupon(
            campaign=campaign,
            user_id=user_id,
            claim_number=claims + 1,
            code=campaign.code,
            status=CouponStatus.AVAILABLE.value,
            claimed_at=now,
        )
        # Built now: after a failed flush the session cannot load the campaign again.
        limit_reached = _limit_reached(campaign)
        try:
            await self.coupons.add(coupon)
        except DuplicateKey as exc:
            raise limit_reached from exc
        event = CouponClaimed(user_id=user_id, campaign_id=campaign.id, code=campaign.code)
        return Claimed(coupon=coupon, events=[event])

    async def list_for_user(
        self, user_id: int, status: CouponStatus | None = None
    ) -> Sequence[Coupon]:
        """The user's coupons, newest claim first, optionally only those in ``status``."""
        return await self.coupons.list_for_user(
            user_id, status=status.value if status else None, now=self.clock()
        )

    def status_of(self, coupon: Coupon) -> CouponStatus:
        """The coupon's status as its holder sees it now."""
        return visible_status(coupon, self.clock())
