"""Coupon campaigns: what admins offer, and the rules a campaign must satisfy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.db import utc_now
from meshmart_common.errors import Conflict, NotFound, ValidationFailed
from trade_service.repository.campaigns import CampaignRepository
from trade_service.repository.errors import DuplicateKey
from trade_service.repository.models import CouponCampaign, DiscountType

MAX_PERCENT = 100


@dataclass(frozen=True, slots=True)
class NewCampaign:
    """What an admin gives to open a campaign (times timezone-aware UTC)."""

    code: str
    name: str
    discount_type: DiscountType
    discount_value: int
    min_spend_cents: int
    total_quantity: int
    per_user_limit: int
    starts_at: datetime
    ends_at: datetime


def _duplicate_code(code: str) -> Conflict:
    return Conflict(f"A campaign with code {code!r} already exists.")


def _check(data: NewCampaign) -> None:
    errors = []
    if data.discount_type == DiscountType.PERCENT and not 1 <= data.discount_value <= MAX_PERCENT:
        errors.append(
            {"field": "discount_value", "message": "a percent discount must be from 1 to 100"}
        )
    if data.ends_at <= data.starts_at:
        errors.append({"field": "ends_at", "message": "must be later than starts_at"})
    if errors:
        raise ValidationFailed("The campaign is not valid.", errors=errors)


class CampaignService:
    """Creates and reads campaigns (admin)."""

    def __init__(self, session: AsyncSession) -> None:
        self.campaigns = CampaignRepository(session)

    async def create(self, data: NewCampaign) -> CouponCampaign:
        """Open a campaign; ValidationFailed: bad discount or window; Conflict: code taken."""
        _check(data)
        if await self.campaigns.get_by_code(data.code) is not None:
            raise _duplicate_code(data.code)
        campaign = CouponCampaign(
            code=data.code,
            name=data.name,
            discount_type=data.discount_type.value,
            discount_value=data.discount_value,
            min_spend_cents=data.min_spend_cents,
            total_quantity=data.total_quantity,
            per_user_limit=data.per_user_limit,
            claimed_count=0,
            used_count=0,
            starts_at=data.starts_at,
            ends_at=data.ends_at,
            created_at=utc_now(),
        )
        try:
            return await self.campaigns.add(campaign)
        except DuplicateKey as exc:
            raise _duplicate_code(data.code) from exc

    async def get(self, campaign_id: int) -> CouponCampaign:
        """The campaign; NotFound otherwise."""
        campaign = await self.campaigns.get(campaign_id)
        if campaign is None:
            raise NotFound(f"Campaign {campaign_id} does not exist.")
        return campaign

    async def get_by_code(self, code: str) -> CouponCampaign | None:
        """The campaign with ``code``, or None."""
        return await self.campaigns.get_by_code(code)

    async def list_page(self, *, offset: int, limit: int) -> tuple[Sequence[CouponCampaign], int]:
        """One page of campaigns, newest first, and how many there are."""
        return await self.campaigns.list_newest_first(offset=offset, limit=limit)
