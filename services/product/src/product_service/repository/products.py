"""Queries on products: lookup, search, stock and rating counters."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

from sqlalchemy import ColumnElement, CursorResult, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from product_service.repository.errors import DuplicateKey
from product_service.repository.models import Product

SortKey = Literal["price", "rating", "created_at", "title"]

_SORT_COLUMNS: dict[SortKey, InstrumentedAttribute[Any]] = {
    "price": Product.price_cents,
    "rating": Product.rating_avg_x100,
    "created_at": Product.created_at,
    "title": Product.title,
}


@dataclass(frozen=True, slots=True)
class ProductFilter:
    """What a search keeps: live products matching every given criterion."""

    text: str | None = None
    category_id: int | None = None
    min_price: int | None = None
    max_price: int | None = None


class ProductRepository:
    """Reads and writes products in one session (flushes, never commits)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, product_id: int) -> Product | None:
        """The product with ``product_id`` (soft-deleted ones included), or None."""
        return await self.session.get(Product, product_id)

    async def get_by_sku(self, sku: str) -> Product | None:
        """The product with ``sku`` (soft-deleted ones included), or None."""
        result = await self.session.scalars(select(Product).where(Product.sku == sku))
        return result.one_or_none()

    async def ids_by_sku(self, skus: Iterable[str]) -> dict[str, int]:
        """Map each of ``skus`` that exists to its product id."""
        wanted = list(skus)
        if not wanted:
            return {}
        rows = await self.session.execute(
            select(Product.sku, Product.id).where(Product.sku.in_(wanted))
        )
        return {sku: product_id for sku, product_id in rows}

    async def search(
        self,
        criteria: ProductFilter,
        *,
        sort: SortKey,
        descending: bool,
        offset: int,
        limit: int,
    ) -> tuple[Sequence[Product], int]:
        """One page of live products matching ``criteria`` and how many match in all.

        Ties on the sort key are broken by id in the same direction, so pages
        never overlap or skip rows.
        """
        conditions: list[ColumnElement[bool]] = [Product.deleted_at.is_(None)]
        if criteria.text:
            conditions.append(
                or_(
                    Product.title.icontains(criteria.text, autoescape=True),
                    Product.description.icontains(criteria.text, autoescape=True),
                )
            )
        if criteria.category_id is not None:
            conditions.append(Product.category_id == criteria.category_id)
        if criteria.min_price is not None:
            conditions.append(Product.price_cents >= criteria.min_price)
        if criteria.max_price is not None:
            conditions.append(Product.price_cents <= criteria.max_price)

        total = await self.session.scalar(
            select(func.count()).select_from(Product).where(*conditions)
        )
        column = _SORT_COLUMNS[sort]
        order = (column.desc(), Product.id.desc()) if descending else (column, Product.id)
        result = await self.session.scalars(
            select(Product).where(*conditions).order_by(*order).offset(offset).limit(limit)
        )
        return result.all(), int(total or 0)

    async def add(self, product: Product) -> Product:
        """Insert ``product``; DuplicateKey when its sku is taken."""
        self.session.add(product)
        await self.flush()
        return product

    async def flush(self) -> None:
        """Write pending changes; DuplicateKey when a changed sku is taken."""
        try:
            await self.session.flush()
        except IntegrityError as exc:
            raise DuplicateKey("product sku exists") from exc

    async def set_on_hand(self, product: Product, on_hand: int, *, now: datetime) -> bool:
        """Set the units on hand unless that would fall below the reserved units.

        The guard is part of the UPDATE, so a reservation committed meanwhile
        cannot be overtaken; False (and nothing written) when it would be.
        """
        result = await self.session.execute(
            update(Product)
            .where(
                Product.id == product.id,
                Product.deleted_at.is_(None),
                Product.reserved <= on_hand,
            )
            .values(on_hand=on_hand, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        await self.session.refresh(product)
        return cast("CursorResult[Any]", result).rowcount > 0

    async def add_rating(self, product: Product, rating: int) -> None:
        """Count one more review of ``rating`` stars in the product's rating counters.

        Done in SQL rather than read-modify-write so concurrent reviews never
        lose a count; the average is recomputed from the stored counters in a
        second statement (MySQL and SQLite disagree on whether one UPDATE's
        assignments see each other's results).
        """
        await self.session.execute(
            update(Product)
            .where(Product.id == product.id)
            .values(
                rating_sum=Product.rating_sum + rating,
                rating_count=Product.rating_count + 1,
            )
            .execution_options(synchronize_session=False)
        )
        await self.session.execute(
            update(Product)
            .where(Product.id == product.id, Product.rating_count > 0)
            .values(
                # Half-up rounding in integers: float literals would reach MySQL
                # as doubles, whose ROUND goes to even (462.5 -> 462).
                rating_avg_x100=(Product.rating_sum * 200 + Product.rating_count)
                // (Product.rating_count * 2)
            )
            .execution_options(synchronize_session=False)
        )
        await self.session.refresh(product)
