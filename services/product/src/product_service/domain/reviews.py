"""Reviews: one 1-5 star rating per customer and product, kept in the product's counters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.db import utc_now
from meshmart_common.errors import Conflict
from product_service.domain.products import ProductService
from product_service.repository.errors import DuplicateKey
from product_service.repository.models import Review
from product_service.repository.products import ProductRepository
from product_service.repository.purchases import PurchaseRepository
from product_service.repository.reviews import ReviewRepository

AUTHOR_MAX_LENGTH = 64


@dataclass(frozen=True, slots=True)
class NewReview:
    """What a customer writes."""

    rating: int
    title: str | None = None
    body: str | None = None


@dataclass(frozen=True, slots=True)
class Reviewer:
    """Who writes a review: the caller's user id and, when the token has one, email."""

    user_id: int
    email: str | None = None

    @property
    def author(self) -> str:
        """The public name on the review: the email's local part, else user-<id>."""
        local = (self.email or "").partition("@")[0].strip()
        return (local or f"user-{self.user_id}")[:AUTHOR_MAX_LENGTH]


class ReviewService:
    """Writes and lists reviews."""

    def __init__(self, session: AsyncSession) -> None:
        self.reviews = ReviewRepository(session)
        self.products = ProductRepository(session)
        self.purchases = PurchaseRepository(session)
        self.catalogue = ProductService(session)

    async def add(self, product_id: int, reviewer: Reviewer, data: NewReview) -> Review:
        """Review a live product once; Conflict on a second review by the same user.

        The review is ``verified`` when the user has bought the product (a
        paid order); reviews written before the purchase are verified when
        the order.paid event arrives.
        """
        product = await self.catalogue.get_live(product_id)
        if await self.reviews.get_by_author(product.id, reviewer.user_id) is not None:
            raise Conflict("You have already reviewed this product.")
        review = Review(
            product_id=product.id,
            user_id=reviewer.user_id,
            author=reviewer.author,
            rating=data.rating,
            title=data.title,
            body=data.body,
            verified=await self.purchases.exists(reviewer.user_id, product.id),
            created_at=utc_now(),
        )
        try:
            await self.reviews.add(review)
        except DuplicateKey as exc:
            raise Conflict("You have already reviewed this product.") from exc
        await self.products.add_rating(product, data.rating)
        return review

    async def list_for_product(
        self, product_id: int, *, offset: int, limit: int
    ) -> tuple[Sequence[Review], int]:
        """One page of a product's reviews, newest first (a soft-deleted product's too)."""
        product = await self.catalogue.get(product_id)
        return await self.reviews.list_for_product(product.id, offset=offset, limit=limit)

    async def mark_verified_purchase(self, product_id: int, user_id: int) -> bool:
        """Mark the user's review of the product verified (called when they bought it)."""
        return await self.reviews.mark_verified(product_id, user_id)
