"""Queries on addresses."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from user_service.repository.models import Address


class AddressRepository:
    """Addresses, always scoped to their owner; only flushes."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def list_of_user(self, user_id: int) -> Sequence[Address]:
        """The addresses of ``user_id`` in creation order."""
        result = await self.session.execute(
            select(Address).where(Address.user_id == user_id).order_by(Address.id)
        )
        return result.scalars().all()

    async def count_of_user(self, user_id: int) -> int:
        """How many addresses ``user_id`` has."""
        result = await self.session.execute(
            select(func.count()).select_from(Address).where(Address.user_id == user_id)
        )
        return int(result.scalar_one())

    async def get_of_user(self, user_id: int, address_id: int) -> Address | None:
        """The address ``address_id`` if ``user_id`` owns it."""
        result = await self.session.execute(
            select(Address).where(Address.id == address_id, Address.user_id == user_id)
        )
        return result.scalar_one_or_none()

    async def add(self, address: Address) -> Address:
        """Insert ``address``."""
        self.session.add(address)
        await self.session.flush()
        return address

    async def save(self, address: Address) -> Address:
        """Flush changes made to ``address``."""
        await self.session.flush()
        return address

    async def clear_default(self, user_id: int, *, except_id: int | None, now: datetime) -> None:
        """Unset the default flag on the addresses of ``user_id`` (but ``except_id``)."""
        query = update(Address).where(Address.user_id == user_id, Address.is_default.is_(True))
        if except_id is not None:
            query = query.where(Address.id != except_id)
        # synchronize_session keeps already-loaded addresses in step with the UPDATE.
        await self.session.execute(
            query.values(is_default=False, updated_at=now).execution_options(
                synchronize_session="fetch"
            )
        )

    async def delete(self, address: Address) -> None:
        """Delete ``address``."""
        await self.session.delete(address)
        await self.session.flush()
