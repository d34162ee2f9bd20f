"""Queries on reviews."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from product_service.repository.errors import DuplicateKey
from product_service.repository.models import Review


class ReviewRepository:
    """Reads and writes reviews in one session (flushes, never commits)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_by_author(self, product_id: int, user_id: int) -> Review | None:
        """The review ``user_id`` wrote of ``product_id``, or None."""
        result = await self.session.scalars(
            select(Review).where(Review.product_id == product_id, Review.user_id == user_id)
        )
        return result.one_or_none()

    async def add(self, review: Review) -> Review:
        """Insert ``review``; DuplicateKey when its author already reviewed the product."""
        self.session.add(review)
        try:
            await self.session.flush()
        except IntegrityError as exc:
            raise DuplicateKey("the user already reviewed this product") from exc
        return review

    async def list_for_product(
        self, product_id: int, *, offset: int, limit: int
    ) -> tuple[Sequence[Review], int]:
        """One page of a product's reviews, newest first, and how many there are."""
        total = await self.session.scalar(
            select(func.count()).select_from(Review).where(Review.product_id == product_id)
        )
        result = await self.session.scalars(
            select(Review)
            .where(Review.product_id == product_id)
            .order_by(Review.created_at.desc(), Review.id.desc())
            .offset(offset)
            .limit(limit)
        )
        return result.all(), int(total or 0)

    async def mark_verified(self, product_id: int, user_id: int) -> bool:
        """Flag the review ``user_id`` wrote of ``product_id`` as a verified purchase.

        Meant for the order-events handler; True when such a review exists.
        """
        result = await self.session.execute(
            update(Review)
            .where(Review.product_id == product_id, Review.user_id == user_id)
            .values(verified=True)
            .execution_options(synchronize_session="fetch")
        )
        return cast("CursorResult[Any]", result).rowcount > 0
