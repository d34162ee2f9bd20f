"""Queries on refresh tokens."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from user_service.repository.models import RefreshToken


class RefreshTokenRepository:
    """Refresh tokens by hash and family; only flushes."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(
        self,
        *,
        user_id: int,
        token_hash: str,
        family_id: str,
        now: datetime,
        expires_at: datetime,
    ) -> RefreshToken:
        """Store a new token of ``family_id``."""
        token = RefreshToken(
            user_id=user_id,
            token_hash=token_hash,
            family_id=family_id,
            created_at=now,
            expires_at=expires_at,
        )
        self.session.add(token)
        await self.session.flush()
        return token

    async def get_by_hash(self, token_hash: str) -> RefreshToken | None:
        """The token whose SHA-256 is ``token_hash``."""
        result = await self.session.execute(
            select(RefreshToken).where(RefreshToken.token_hash == token_hash)
        )
        return result.scalar_one_or_none()

    async def mark_used(self, token_id: int, now: datetime) -> bool:
        """Mark an unused, unrevoked token used; False when another request got there first.

        The condition sits in the UPDATE itself, so two replicas racing with the
        same token cannot both rotate it.
        """
        result = await self.session.execute(
            update(RefreshToken)
            .where(
                RefreshToken.id == token_id,
                RefreshToken.used_at.is_(None),
                RefreshToken.revoked_at.is_(None),
            )
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0) == 1)

    async def revoke_family(self, family_id: str, now: datetime) -> None:
        """Revoke every token of a login session."""
        await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )

    async def revoke_all_of_user(self, user_id: int, now: datetime) -> None:
        """Revoke every token of ``user_id`` (all sessions)."""
        await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
            .execution_options(synchronize_session=False)
        )

    async def delete_expired_of_user(self, user_id: int, now: datetime) -> None:
        """Drop tokens of ``user_id`` that can no longer be used or detected as reused.

        The expired rows are found with a plain read and deleted by primary
        key. A ``DELETE ... WHERE user_id = ?`` would lock the index gap after
        the user's last token on MySQL/MariaDB (REPEATABLE READ), and
        concurrent logins of users whose tokens share that gap would then
        deadlock on their inserts.
        """
        expired = list(
            await self.session.scalars(
                select(RefreshToken.id).where(
                    RefreshToken.user_id == user_id, RefreshToken.expires_at < now
                )
            )
        )
        if expired:
            await self.session.execute(
                delete(RefreshToken)
                .where(RefreshToken.id.in_(expired))
                .execution_options(synchronize_session=False)
            )
