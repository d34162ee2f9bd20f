"""Queries on cart lines."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, and_, delete, func, or_, select
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from order_service.repository.models import CartItem


class CartRepository:
    """Reads and writes the cart lines of customers (flushes, never commits)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lines(self, user_id: int) -> Sequence[CartItem]:
        """The user's cart lines in the order they were first added."""
        result = await self.session.scalars(
            select(CartItem)
            .where(CartItem.user_id == user_id)
            .order_by(CartItem.created_at, CartItem.id)
            .execution_options(populate_existing=True)
        )
        return result.all()

    async def get(self, user_id: int, product_id: int) -> CartItem | None:
        """The user's line for ``product_id``, or None."""
        result = await self.session.scalars(
            select(CartItem).where(CartItem.user_id == user_id, CartItem.product_id == product_id)
        )
        return result.one_or_none()

    async def count(self, user_id: int) -> int:
        """How many products the user's cart holds."""
        total = await self.session.scalar(
            select(func.count()).select_from(CartItem).where(CartItem.user_id == user_id)
        )
        return int(total or 0)

    async def put(
        self,
        *,
        user_id: int,
        product_id: int,
        quantity: int,
        title: str,
        unit_price_cents: int,
        now: datetime,
    ) -> None:
        """Insert the line or, when the user already has one for the product, overwrite it.

        One INSERT ... ON CONFLICT / ON DUPLICATE KEY statement, so two
        concurrent requests for the same product cannot both insert.
        """
        values: dict[str, Any] = {
            "user_id": user_id,
            "product_id": product_id,
            "quantity": quantity,
            "title": title,
            "unit_price_cents": unit_price_cents,
            "created_at": now,
            "updated_at": now,
        }
        changes = {k: values[k] for k in ("quantity", "title", "unit_price_cents", "updated_at")}
        if self.session.get_bind().dialect.name == "sqlite":
            sqlite_insert = sqlite.insert(CartItem).values(values)
            await self.session.execute(
                sqlite_insert.on_conflict_do_update(
                    index_elements=[CartItem.user_id, CartItem.product_id], set_=changes
                )
            )
        else:
            mysql_insert = mysql.insert(CartItem).values(values)
            await self.session.execute(mysql_insert.on_duplicate_key_update(changes))

    async def remove(self, user_id: int, product_id: int) -> bool:
        """Delete the user's line for ``product_id``; False when there was none."""
        result = await self.session.execute(
            delete(CartItem)
            .where(CartItem.user_id == user_id, CartItem.product_id == product_id)
            .execution_options(synchronize_session=False)
        )
        return cast("CursorResult[Any]", result).rowcount > 0

    async def clear(self, user_id: int) -> int:
        """Delete every line of the user's cart; return how many there were."""
        result = await self.session.execute(
            delete(CartItem)
            .where(CartItem.user_id == user_id)
            .execution_options(synchronize_session=False)
        )
        return cast("CursorResult[Any]", result).rowcount

    async def remove_exactly(self, user_id: int, lines: Sequence[CartItem]) -> bool:
        """Delete exactly these lines, each with the quantity it was read with.

        False (and the caller must roll back) when any of them is gone or its
        quantity changed meanwhile: a concurrent checkout or cart edit won.
        """
        if not lines:
            return True
        matches = [
            and_(CartItem.id == line.id, CartItem.quantity == line.quantity) for line in lines
        ]
        result = await self.session.execute(
            delete(CartItem)
            .where(CartItem.user_id == user_id, or_(*matches))
            .execution_options(synchronize_session=False)
        )
        return cast("CursorResult[Any]", result).rowcount == len(lines)
