"""Categories: the shelves products sit on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.errors import Conflict
from product_service.repository.categories import CategoryRepository
from product_service.repository.errors import DuplicateKey
from product_service.repository.models import Category


@dataclass(frozen=True, slots=True)
class NewCategory:
    """What an admin gives to open a category."""

    slug: str
    name: str
    description: str = ""


class CategoryService:
    """Lists and creates categories."""

    def __init__(self, session: AsyncSession) -> None:
        self.categories = CategoryRepository(session)

    async def list_all(self) -> Sequence[Category]:
        """Every category, by name."""
        return await self.categories.list_by_name()

    async def create(self, data: NewCategory) -> Category:
        """Open a category; Conflict when the slug is taken."""
        if await self.categories.get_by_slug(data.slug) is not None:
            raise Conflict(f"A category with slug {data.slug!r} already exists.")
        category = Category(slug=data.slug, name=data.name, description=data.description)
        try:
            return await self.categories.add(category)
        except DuplicateKey as exc:
            raise Conflict(f"A category with slug {data.slug!r} already exists.") from exc
