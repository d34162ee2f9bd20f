"""Queries on coupon campaigns, with the claim and use counters kept in SQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from trade_service.repository.errors import DuplicateKey
from trade_service.repository.models import CouponCampaign


class CampaignRepository:
    """Reads and writes campaigns in one session (flushes, never commits)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, campaign_id: int) -> CouponCampaign | None:
        """The campaign with ``campaign_id``, or None."""
        return await self.session.get(CouponCampaign, campaign_id)

    async def get_by_code(self, code: str) -> CouponCampaign | None:
        """The campaign with ``code``, or None."""
        result = await self.session.scalars(
            select(CouponCampaign).where(CouponCampaign.code == code)
        )
        return result.one_or_none()

    async def list_newest_first(
        self, *, offset: int, limit: int
    ) -> tuple[Sequence[CouponCampaign], int]:
        """One page of campaigns, newest first, and how many there are."""
        total = await self.session.scalar(select(func.count()).select_from(CouponCampaign))
        result = await self.session.scalars(
            select(CouponCampaign)
            .order_by(CouponCampaign.created_at.desc(), CouponCampaign.id.desc())
            .offset(offset)
            .limit(limit)
        )
        return result.all(), int(total or 0)

    async def add(self, campaign: CouponCampaign) -> CouponCampaign:
        """Insert ``campaign``; DuplicateKey when its code is taken."""
        self.session.add(campaign)
        try:
            await self.session.flush()
        except IntegrityError as exc:
            raise DuplicateKey(f"campaign code {campaign.code!r} exists") from exc
        return campaign

    async def count_claim(self, campaign_id: int) -> bool:
        """Count one more claimed coupon unless the campaign is sold out.

        The guard is part of the UPDATE, which also serialises concurrent
        claims of one campaign: False (and nothing written) when none is left.
        """
        result = await self.session.execute(
            update(CouponCampaign)
            .where(
                CouponCampaign.id == campaign_id,
                CouponCampaign.claimed_count < CouponCampaign.total_quantity,
            )
            .values(claimed_count=CouponCampaign.claimed_count + 1)
            .execution_options(synchronize_session=False)
        )
        return cast("CursorResult[Any]", result).rowcount > 0

    async def count_use(self, campaign_id: int) -> None:
        """Count one more coupon of the campaign spent on a paid order."""
        await self.session.execute(
            update(CouponCampaign)
            .where(CouponCampaign.id == campaign_id)
            .values(used_count=CouponCampaign.used_count + 1)
            .execution_options(synchronize_session=False)
        )
