"""A customer's shipping addresses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.errors import NotFound
from user_service.domain.clock import Clock
from user_service.domain.errors import AccountGone, TooManyAddresses
from user_service.repository.addresses import AddressRepository
from user_service.repository.models import Address
from user_service.repository.users import UserRepository


@dataclass(frozen=True, slots=True)
class NewAddress:
    """The fields of an address to create."""

    recipient: str
    line1: str
    city: str
    postal_code: str
    country: str
    line2: str | None = None
    phone: str | None = None
    is_default: bool = False


class AddressChanges(TypedDict, total=False):
    """The fields a partial update sets (absent keys stay as they are)."""

    recipient: str
    line1: str
    line2: str | None
    city: str
    postal_code: str
    country: str
    phone: str | None
    is_default: bool


class AddressNotFound(NotFound):
    """No such address among the caller's (another user's id looks exactly the same)."""

    def __init__(self) -> None:
        super().__init__("No such address.")


class AddressService:
    """Addresses of one account; at most one default, at most ``max_per_user``."""

    def __init__(self, session: AsyncSession, *, max_per_user: int, clock: Clock) -> None:
        self.addresses = AddressRepository(session)
        self.users = UserRepository(session)
        self.max_per_user = max_per_user
        self.clock = clock

    async def list(self, user_id: int) -> Sequence[Address]:
        """The caller's addresses in creation order."""
        if await self.users.get(user_id) is None:
            raise AccountGone()
        return await self.addresses.list_of_user(user_id)

    async def create(self, user_id: int, fields: NewAddress) -> Address:
        """Add an address; TooManyAddresses beyond the limit."""
        await self._lock_owner(user_id)
        if await self.addresses.count_of_user(user_id) >= self.max_per_user:
            raise TooManyAddresses(self.max_per_user)
        now = self.clock.now()
        if fields.is_default:
            await self.addresses.clear_default(user_id, except_id=None, now=now)
        return await self.addresses.add(
            Address(
                user_id=user_id,
                recipient=fields.recipient,
                line1=fields.line1,
                line2=fields.line2,
                city=fields.city,
                postal_code=fields.postal_code,
                country=fields.country,
                phone=fields.phone,
                is_default=fields.is_default,
                created_at=now,
                updated_at=now,
            )
        )

    async def update(self, user_id: int, address_id: int, changes: AddressChanges) -> Address:
        """Apply ``changes`` to one of the caller's addresses."""
        await self._lock_owner(user_id)
        address = await self._owned(user_id, address_id)
        now = self.clock.now()
        if changes.get("is_default"):
            await self.addresses.clear_default(user_id, except_id=address.id, now=now)
        for name, value in changes.items():
            setattr(address, name, value)
        address.updated_at = now
        return await self.addresses.save(address)

    async def delete(self, user_id: int, address_id: int) -> None:
        """Delete one of the caller's addresses."""
        await self._lock_owner(user_id)
        await self.addresses.delete(await self._owned(user_id, address_id))

    async def _owned(self, user_id: int, address_id: int) -> Address:
        address = await self.addresses.get_of_user(user_id, address_id)
        if address is None:
            raise AddressNotFound()
        return address

    async def _lock_owner(self, user_id: int) -> None:
        # Writes of one user run one at a time, so the limit and the single
        # default hold across concurrent requests and replicas.
        if await self.users.get_for_update(user_id) is None:
            raise AccountGone()
