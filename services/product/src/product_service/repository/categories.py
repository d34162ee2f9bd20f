"""Queries on categories."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from product_service.repository.errors import DuplicateKey
from product_service.repository.models import Category


class CategoryRepository:
    """Reads and writes categories in one session (flushes, never commits)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def list_by_name(self) -> Sequence[Category]:
        """Every category, ordered by name (then id)."""
        result = await self.session.scalars(select(Category).order_by(Category.name, Category.id))
        return result.all()

    async def get(self, category_id: int) -> Category | None:
        """The category with ``category_id``, or None."""
        return await self.session.get(Category, category_id)

    async def get_by_slug(self, slug: str) -> Category | None:
        """The category with ``slug``, or None."""
        result = await self.session.scalars(select(Category).where(Category.slug == slug))
        return result.one_or_none()

    async def add(self, category: Category) -> Category:
        """Insert ``category``; DuplicateKey when its slug is taken."""
        self.session.add(category)
        try:
            await self.session.flush()
        except IntegrityError as exc:
            raise DuplicateKey(f"category slug {category.slug!r} exists") from exc
        return category
