"""Queries on orders and their lines."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from order_service.repository.errors import DuplicateKey
from order_service.repository.models import Order


class OrderRepository:
    """Reads and writes orders in one session (flushes, never commits)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, order_id: int) -> Order | None:
        """The order with its lines as stored now (re-read even if already loaded), or None."""
        result = await self.session.scalars(
            select(Order).where(Order.id == order_id).execution_options(populate_existing=True)
        )
        return result.one_or_none()

    async def find_by_idempotency_key(self, user_id: int, key: str) -> Order | None:
        """The user's order created with Idempotency-Key ``key``, or None."""
        result = await self.session.scalars(
            select(Order)
            .where(Order.user_id == user_id, Order.idempotency_key == key)
            .execution_options(populate_existing=True)
        )
        return result.one_or_none()

    async def add(self, order: Order) -> Order:
        """Insert ``order`` with its lines; DuplicateKey when its idempotency key is taken."""
        self.session.add(order)
        try:
            await self.session.flush()
        except IntegrityError as exc:
            raise DuplicateKey("order idempotency key exists") from exc
        return order

    async def abandon(self) -> None:
        """Roll back the unit of work after a failed insert, so a fresh read can follow.

        After a unique violation the transaction cannot go on; and on MySQL a
        plain read inside it would still see the snapshot taken before the
        winning row was committed. Only valid when nothing else was written.
        """
        await self.session.rollback()

    async def search(
        self, *, user_id: int | None, status: str | None, offset: int, limit: int
    ) -> tuple[Sequence[Order], int]:
        """One page of orders, newest first (ties by id), and how many match in all."""
        conditions: list[ColumnElement[bool]] = []
        if user_id is not None:
            conditions.append(Order.user_id == user_id)
        if status is not None:
            conditions.append(Order.status == status)
        total = await self.session.scalar(
            select(func.count()).select_from(Order).where(*conditions)
        )
        result = await self.session.scalars(
            select(Order)
            .where(*conditions)
            .order_by(Order.created_at.desc(), Order.id.desc())
            .offset(offset)
            .limit(limit)
        )
        return result.all(), int(total or 0)

    async def update_if_status(self, order_id: int, expected: str, values: dict[str, Any]) -> bool:
        """Write ``values`` only if the order is still in status ``expected``.

        The guard is part of the UPDATE, so of two concurrent changes from the
        same status (pay and cancel, cancel and timeout) exactly one wins;
        False, and nothing written, for the other.
        """
        result = await self.session.execute(
            update(Order)
            .where(Order.id == order_id, Order.status == expected)
            .values(values)
            .execution_options(synchronize_session=False)
        )
        return cast("CursorResult[Any]", result).rowcount > 0

    async def advance_when_held(self, order_id: int, expected: str, values: dict[str, Any]) -> bool:
        """Write ``values`` only if the order is in ``expected`` with both saga replies in.

        Run after recording either reply: whichever transaction sees both flags
        set advances the order, and only that one.
        """
        result = await self.session.execute(
            update(Order)
            .where(
                Order.id == order_id,
                Order.status == expected,
                Order.stock_ok.is_(True),
                Order.trade_ok.is_(True),
            )
            .values(values)
            .execution_options(synchronize_session=False)
        )
        return cast("CursorResult[Any]", result).rowcount > 0
