"""Purchases: which user bought which product (for verified reviews)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Insert, select
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from product_service.repository.models import Purchase


class PurchaseRepository:
    """Reads and writes purchases in one session (never commits)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def exists(self, user_id: int, product_id: int) -> bool:
        """True when ``user_id`` has bought ``product_id``."""
        found = await self.session.scalar(
            select(Purchase.id)
            .where(Purchase.user_id == user_id, Purchase.product_id == product_id)
            .limit(1)
        )
        return found is not None

    async def record(self, user_id: int, product_id: int, *, order_id: int, now: datetime) -> None:
        """Note that ``user_id`` bought ``product_id``; a second purchase adds nothing.

        One statement that ignores the duplicate (rather than check, then
        insert), so two paid orders of one user handled at once cannot clash.
        """
        values = {
            "user_id": user_id,
            "product_id": product_id,
            "order_id": order_id,
            "created_at": now,
        }
        statement: Insert
        if self.session.get_bind().dialect.name == "sqlite":
            statement = (
                sqlite.insert(Purchase)
                .values(**values)
                .on_conflict_do_nothing(index_elements=["user_id", "product_id"])
            )
        else:
            upsert = mysql.insert(Purchase).values(**values)
            # A no-op assignment: MySQL's "insert unless the unique key exists".
            statement = upsert.on_duplicate_key_update(user_id=upsert.inserted.user_id)
        await self.session.execute(statement)
