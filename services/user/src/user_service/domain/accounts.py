"""Registration, profiles, password changes and the admin's account list."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.audit import AuditContext
from meshmart_common.auth import Role
from meshmart_common.events import AuditAction, AuditOutcome, AuditRecorded
from meshmart_common.messaging.outbox import EventPublisher
from user_service.domain.clock import Clock
from user_service.domain.emails import normalise_email
from user_service.domain.errors import AccountGone, EmailAlreadyRegistered, WrongCurrentPassword
from user_service.domain.passwords import PasswordHasher
from user_service.events.publisher import (
    audit_actor,
    publish_audit_entry,
    publish_user_registered,
)
from user_service.repository.models import User
from user_service.repository.refresh_tokens import RefreshTokenRepository
from user_service.repository.users import DuplicateEmail, UserRepository


@dataclass(frozen=True, slots=True)
class UserList:
    """One page of accounts and how many match in total."""

    items: Sequence[User]
    total: int


class AccountService:
    """Accounts and their profile data.

    With a ``publisher``, registering a customer also writes user.registered
    to the outbox in the same transaction (reads need none).
    """

    def __init__(
        self,
        session: AsyncSession,
        *,
        hasher: PasswordHasher,
        clock: Clock,
        publisher: EventPublisher | None = None,
    ) -> None:
        self.session = session
        self.users = UserRepository(session)
        self.refresh_tokens = RefreshTokenRepository(session)
        self.hasher = hasher
        self.clock = clock
        self.publisher = publisher

    async def register(
        self, *, email: str, password: str, full_name: str | None, role: Role = Role.CUSTOMER
    ) -> User:
        """Create an account; EmailAlreadyRegistered when the email is taken (in any case).

        A customer account also gets its user.registered event (when the
        service has a publisher), committed with the account or not at all.
        """
        normalised = normalise_email(email)
        if await self.users.email_exists(normalised):
            raise EmailAlreadyRegistered()
        password_hash = await self.hasher.hash(password)
        try:
            user = await self.users.add(
                email=normalised,
                password_hash=password_hash,
                full_name=full_name,
                role=role,
                now=self.clock.now(),
            )
        except DuplicateEmail as exc:
            raise EmailAlreadyRegistered() from exc
        if self.publisher is not None and role is Role.CUSTOMER:
            await publish_user_registered(self.publisher, self.session, user)
        return user

    async def get(self, user_id: int) -> User:
        """The caller's account; AccountGone when it was deleted after the token was issued."""
        user = await self.users.get(user_id)
        if user is None:
            raise AccountGone()
        return user

    async def update_profile(self, user_id: int, *, full_name: str | None) -> User:
        """Set the caller's display name (None clears it)."""
        user = await self.get(user_id)
        user.full_name = full_name
        user.updated_at = self.clock.now()
        return await self.users.save(user)

    async def change_password(
        self, user_id: int, *, current_password: str, new_password: str, audit: AuditContext
    ) -> None:
        """Replace the password after checking the current one; ends every login session.

        Audited either way: auth.password.changed, or auth.password.change_failed
        with WrongCurrentPassword (whose entry commits although the request fails).
        """
        user = await self.get(user_id)
        audit = audit.by(audit_actor(user))
        if not await self.hasher.verify(user.password_hash, current_password):
            await self._audit(
                audit.entry(
                    AuditAction.PASSWORD_CHANGE_FAILED,
                    outcome=AuditOutcome.FAILURE,
                    target_type="user",
                    target_id=user.id,
                    details={"reason": "wrong_current_password"},
                )
            )
            raise WrongCurrentPassword()
        now = self.clock.now()
        user.password_hash = await self.hasher.hash(new_password)
        user.updated_at = now
        await self.users.save(user)
        # Sessions opened with the old password (possibly by someone else) end here.
        await self.refresh_tokens.revoke_all_of_user(user.id, now)
        await self._audit(
            audit.entry(
                AuditAction.PASSWORD_CHANGED,
                target_type="user",
                target_id=user.id,
                details={"refresh_tokens_revoked": True},
            )
        )

    async def _audit(self, entry: AuditRecorded) -> None:
        if self.publisher is None:
            raise RuntimeError("audited account changes need an EventPublisher")
        await publish_audit_entry(self.publisher, self.session, entry)

    async def list_users(self, *, offset: int, limit: int, email_contains: str | None) -> UserList:
        """Accounts ordered by id, optionally those whose email contains ``email_contains``."""
        needle = email_contains.strip().lower() if email_contains else None
        return UserList(
            items=await self.users.list(offset=offset, limit=limit, email_contains=needle),
            total=await self.users.count(email_contains=needle),
        )
