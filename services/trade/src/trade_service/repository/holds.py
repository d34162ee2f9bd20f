"""Queries on trade holds: one row per order, its status changed only by guarded UPDATEs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Table, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.db import insert_if_new
from trade_service.repository.models import TradeHold


class HoldRepository:
    """Reads and writes trade holds in one session (flushes, never commits)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create_if_new(
        self, order_id: int, user_id: int, *, status: str, now: datetime
    ) -> bool:
        """Create the order's hold in ``status`` unless one exists; True when this call did.

        When another transaction is creating the same hold, this waits for it
        and then reports False, so the caller reads the winner's decision.
        """
        return await insert_if_new(
            self.session,
            cast(Table, TradeHold.__table__),
            {
                "order_id": order_id,
                "user_id": user_id,
                "status": status,
                "discount_cents": 0,
                "points_locked": 0,
                "created_at": now,
                "updated_at": now,
            },
        )

    async def get_latest(self, order_id: int) -> TradeHold | None:
        """The order's hold as committed now (a shared-lock read on MySQL).

        Shared, not exclusive: several redeliveries that waited on the same
        INSERT each hold a shared lock on the row already, and exclusive reads
        would deadlock them against each other.
        """
        result = await self.session.scalars(
            select(TradeHold)
            .where(TradeHold.order_id == order_id)
            .with_for_update(read=True)
            .execution_options(populate_existing=True)
        )
        return result.one_or_none()

    async def move(self, order_id: int, *, from_status: str, to_status: str, now: datetime) -> bool:
        """Change the hold's status if it is ``from_status``; True when this call changed it.

        Of two concurrent deliveries of the same event only one finds the hold
        still in ``from_status``, so the effects that follow happen once.
        """
        result = await self.session.execute(
            update(TradeHold)
            .where(TradeHold.order_id == order_id, TradeHold.status == from_status)
            .values(status=to_status, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        return cast("CursorResult[Any]", result).rowcount > 0

    async def flush(self) -> None:
        """Write pending changes of loaded holds."""
        await self.session.flush()
