"""Categories: the shelves products sit on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.audit import AuditContext
from meshmart_common.errors import Conflict
from meshmart_common.events import AuditAction
from meshmart_common.messaging.outbox import EventPublisher
from product_service.events.publishing import publish
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
    """Lists and creates categories.

    Categories publish no domain event; an admin's new category records its
    audit entry through ``publisher`` (needed when an audit context is given).
    """

    def __init__(self, session: AsyncSession, publisher: EventPublisher | None = None) -> None:
        self.session = session
        self.publisher = publisher
        self.categories = CategoryRepository(session)

    async def list_all(self) -> Sequence[Category]:
        """Every category, by name."""
        return await self.categories.list_by_name()

    async def create(self, data: NewCategory, *, audit: AuditContext | None = None) -> Category:
        """Open a category; Conflict when the slug is taken."""
        if await self.categories.get_by_slug(data.slug) is not None:
            raise Conflict(f"A category with slug {data.slug!r} already exists.")
        category = Category(slug=data.slug, name=data.name, description=data.description)
        try:
            category = await self.categories.add(category)
        except DuplicateKey as exc:
            raise Conflict(f"A category with slug {data.slug!r} already exists.") from exc
        if audit is not None:
            if self.publisher is None:
                raise RuntimeError("an audited category needs an EventPublisher")
            await publish(
                self.session,
                self.publisher,
                audit.entry(
                    AuditAction.CATEGORY_CREATED,
                    target_type="category",
                    target_id=category.id,
                    details={"slug": category.slug},
                ),
            )
        return category
