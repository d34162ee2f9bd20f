"""Queries on claimed coupons: the caller's list, and guarded status changes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from trade_service.repository.errors import DuplicateKey
from trade_service.repository.models import Coupon, CouponCampaign, CouponStatus

AVAILABLE = CouponStatus.AVAILABLE.value
LOCKED = CouponStatus.LOCKED.value
USED = CouponStatus.USED.value
EXPIRED = CouponStatus.EXPIRED.value


class CouponRepository:
    """Reads and writes coupons in one session (flushes, never commits)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, coupon_id: int) -> Coupon | None:
        """The coupon with ``coupon_id``, or None (fresh from the database)."""
        result = await self.session.scalars(
            select(Coupon).where(Coupon.id == coupon_id).execution_options(populate_existing=True)
        )
        return result.one_or_none()

    async def add(self, coupon: Coupon) -> Coupon:
        """Insert ``coupon``; DuplicateKey when the user's claim number is taken."""
        self.session.add(coupon)
        try:
            await self.session.flush()
        except IntegrityError as exc:
            raise DuplicateKey("the user's claim of this campaign exists") from exc
        return coupon

    async def count_claims(self, campaign_id: int, user_id: int) -> int:
        """How many coupons of ``campaign_id`` the user has claimed."""
        total = await self.session.scalar(
            select(func.count())
            .select_from(Coupon)
            .where(Coupon.campaign_id == campaign_id, Coupon.user_id == user_id)
        )
        return int(total or 0)

    async def list_for_user(
        self, user_id: int, *, status: str | None, now: datetime
    ) -> Sequence[Coupon]:
        """The user's coupons, newest claim first; ``status`` as the caller sees it.

        An ``available`` coupon whose campaign has ended counts as ``expired``.
        """
        conditions: list[ColumnElement[bool]] = [Coupon.user_id == user_id]
        ended = CouponCampaign.ends_at <= now
        if status == AVAILABLE:
            conditions += [Coupon.status == AVAILABLE, CouponCampaign.ends_at > now]
        elif status == EXPIRED:
            conditions.append(
                or_(Coupon.status == EXPIRED, and_(Coupon.status == AVAILABLE, ended))
            )
        elif status is not None:
            conditions.append(Coupon.status == status)
        result = await self.session.scalars(
            select(Coupon)
            .join(Coupon.campaign)
            .where(*conditions)
            .order_by(Coupon.claimed_at.desc(), Coupon.id.desc())
        )
        return result.all()

    async def available_with_code(self, user_id: int, code: str) -> Sequence[Coupon]:
        """The user's coupons of campaign ``code`` stored as available, soonest ending first."""
        result = await self.session.scalars(
            select(Coupon)
            .join(Coupon.campaign)
            .where(Coupon.user_id == user_id, Coupon.code == code, Coupon.status == AVAILABLE)
            .order_by(CouponCampaign.ends_at, Coupon.id)
            .execution_options(populate_existing=True)
        )
        return result.all()

    async def lock(self, coupon_id: int, order_id: int) -> bool:
        """Hold an available coupon for ``order_id``; False when it is no longer available."""
        return await self._change(
            Coupon.id == coupon_id,
            Coupon.status == AVAILABLE,
            values={"status": LOCKED, "order_id": order_id},
        )

    async def mark_used(self, coupon_id: int, order_id: int, *, now: datetime) -> bool:
        """Spend the coupon held for ``order_id``; False when it is not held for it."""
        return await self._change(
            Coupon.id == coupon_id,
            Coupon.status == LOCKED,
            Coupon.order_id == order_id,
            values={"status": USED, "used_at": now},
        )

    async def unlock(self, coupon_id: int, order_id: int, *, status: str) -> bool:
        """Give back the coupon held for ``order_id`` as ``status`` (available or expired)."""
        return await self._change(
            Coupon.id == coupon_id,
            Coupon.status == LOCKED,
            Coupon.order_id == order_id,
            values={"status": status, "order_id": None},
        )

    async def _change(self, *conditions: ColumnElement[bool], values: dict[str, Any]) -> bool:
        # The expected current status is part of the UPDATE: of two concurrent
        # changes only one finds the row still in that status.
        result = await self.session.execute(
            update(Coupon)
            .where(*conditions)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return cast("CursorResult[Any]", result).rowcount > 0
