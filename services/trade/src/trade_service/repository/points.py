"""Queries on points: the per-user account counters and the history entries.

Every change of ``balance`` or ``locked`` is one UPDATE whose WHERE clause
carries the guard (enough points available, enough locked), so concurrent
orders can never drive a counter negative or lock more than is there.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.db import insert_if_new
from trade_service.repository.models import PointsAccount, PointsEntry


class PointsRepository:
    """Reads and writes points in one session (flushes, never commits)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_account(self, user_id: int) -> PointsAccount | None:
        """The user's account as stored now, or None before their first points."""
        result = await self.session.scalars(
            select(PointsAccount)
            .where(PointsAccount.user_id == user_id)
            .execution_options(populate_existing=True)
        )
        return result.one_or_none()

    async def ensure_account(self, user_id: int, *, now: datetime) -> None:
        """Create the user's empty account unless it exists (safe against a concurrent creator)."""
        await insert_if_new(
            self.session,
            cast(Table, PointsAccount.__table__),
            {"user_id": user_id, "balance": 0, "locked": 0, "updated_at": now},
        )

    async def credit(self, user_id: int, points: int, *, now: datetime) -> bool:
        """Add ``points`` to the balance (the account must exist)."""
        return await self._change(
            PointsAccount.user_id == user_id,
            values={"balance": PointsAccount.balance + points, "updated_at": now},
        )

    async def lock(self, user_id: int, points: int, *, now: datetime) -> bool:
        """Hold ``points`` of the available ones; False (nothing held) when too few are."""
        return await self._change(
            PointsAccount.user_id == user_id,
            PointsAccount.balance - PointsAccount.locked >= points,
            values={"locked": PointsAccount.locked + points, "updated_at": now},
        )

    async def release(self, user_id: int, points: int, *, now: datetime) -> bool:
        """Lift a hold of ``points``; False when fewer are locked."""
        return await self._change(
            PointsAccount.user_id == user_id,
            PointsAccount.locked >= points,
            values={"locked": PointsAccount.locked - points, "updated_at": now},
        )

    async def redeem_locked(self, user_id: int, points: int, *, now: datetime) -> bool:
        """Spend ``points`` that are locked: balance and locked both drop; False if not locked."""
        return await self._change(
            PointsAccount.user_id == user_id,
            PointsAccount.locked >= points,
            PointsAccount.balance >= points,
            values={
                "balance": PointsAccount.balance - points,
                "locked": PointsAccount.locked - points,
                "updated_at": now,
            },
        )

    async def add_entry(self, entry: PointsEntry) -> PointsEntry:
        """Append one history entry."""
        self.session.add(entry)
        await self.session.flush()
        return entry

    async def history(
        self, user_id: int, *, offset: int, limit: int
    ) -> tuple[Sequence[PointsEntry], int]:
        """One page of the user's history, newest first, and how many entries there are."""
        total = await self.session.scalar(
            select(func.count()).select_from(PointsEntry).where(PointsEntry.user_id == user_id)
        )
        result = await self.session.scalars(
            select(PointsEntry)
            .where(PointsEntry.user_id == user_id)
            .order_by(PointsEntry.created_at.desc(), PointsEntry.id.desc())
            .offset(offset)
            .limit(limit)
        )
        return result.all(), int(total or 0)

    async def has_entry(self, user_id: int, *, reason: str, note: str) -> bool:
        """True when the user has an entry with ``reason`` and ``note`` (the seeder's marker)."""
        found = await self.session.scalar(
            select(PointsEntry.id)
            .where(
                PointsEntry.user_id == user_id,
                PointsEntry.reason == reason,
                PointsEntry.note == note,
            )
            .limit(1)
        )
        return found is not None

    async def _change(self, *conditions: ColumnElement[bool], values: dict[str, Any]) -> bool:
        result = await self.session.execute(
            update(PointsAccount)
            .where(*conditions)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return cast("CursorResult[Any]", result).rowcount > 0
