"""Queries on accounts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.auth import Role
from user_service.repository.models import User


class DuplicateEmail(Exception):
    """The unique index on users.email refused the row (a concurrent registration won)."""


class UserRepository:
    """Accounts; only flushes, the caller's unit of work commits."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: int) -> User | None:
        """The account with ``user_id``."""
        return await self.session.get(User, user_id)

    async def get_for_update(self, user_id: int) -> User | None:
        """The account, row-locked until commit (serialises writes to one user's data)."""
        result = await self.session.execute(
            select(User).where(User.id == user_id).with_for_update()
        )
        return result.scalar_one_or_none()

    async def get_by_email(self, email: str) -> User | None:
        """The account with the normalised ``email``."""
        result = await self.session.execute(select(User).where(User.email == email))
        return result.scalar_one_or_none()

    async def email_exists(self, email: str) -> bool:
        """True when an account uses the normalised ``email``."""
        result = await self.session.execute(select(User.id).where(User.email == email))
        return result.first() is not None

    async def add(
        self,
        *,
        email: str,
        password_hash: str,
        full_name: str | None,
        role: Role,
        now: datetime,
    ) -> User:
        """Insert an account; DuplicateEmail when the email is taken."""
        user = User(
            email=email,
            password_hash=password_hash,
            full_name=full_name,
            role=role,
            created_at=now,
            updated_at=now,
            failed_login_count=0,
        )
        self.session.add(user)
        try:
            await self.session.flush()
        except IntegrityError as exc:
            raise DuplicateEmail(email) from exc
        return user

    async def record_failed_login(self, user_id: int) -> int:
        """Count one more consecutive failure atomically; return the new count."""
        await self.session.execute(
            update(User)
            .where(User.id == user_id)
            .values(failed_login_count=User.failed_login_count + 1)
            .execution_options(synchronize_session=False)
        )
        # A column select reads the row as stored, not the (stale) identity map.
        result = await self.session.execute(
            select(User.failed_login_count).where(User.id == user_id)
        )
        return int(result.scalar_one())

    async def lock_until(self, user_id: int, until: datetime) -> None:
        """Refuse logins of ``user_id`` until ``until``."""
        await self.session.execute(
            update(User)
            .where(User.id == user_id)
            .values(locked_until=until)
            .execution_options(synchronize_session=False)
        )

    async def reset_failed_logins(self, user: User) -> None:
        """Forget the failures of ``user`` (after a successful login)."""
        user.failed_login_count = 0
        user.locked_until = None
        await self.session.flush()

    async def save(self, user: User) -> User:
        """Flush changes made to ``user``."""
        await self.session.flush()
        return user

    async def count(self, *, email_contains: str | None = None) -> int:
        """How many accounts match."""
        query = select(func.count()).select_from(User)
        if email_contains:
            query = query.where(User.email.contains(email_contains, autoescape=True))
        result = await self.session.execute(query)
        return int(result.scalar_one())

    async def list(
        self, *, offset: int, limit: int, email_contains: str | None = None
    ) -> Sequence[User]:
        """Accounts ordered by id, one page."""
        query = select(User).order_by(User.id).offset(offset).limit(limit)
        if email_contains:
            query = query.where(User.email.contains(email_contains, autoescape=True))
        result = await self.session.execute(query)
        return result.scalars().all()
