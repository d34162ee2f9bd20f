"""Login, refresh token rotation and logout.

Logins (good and bad, locked-out attempts included) and the reuse of a
refresh token leave an audit entry in the outbox, in the request's
transaction; the errors of the refusals commit it (``commit_session``).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.audit import AuditActor, AuditContext, AuditDetails
from meshmart_common.events import AuditAction, AuditOutcome, AuditRecorded
from meshmart_common.messaging.outbox import EventPublisher
from user_service.domain.clock import Clock
from user_service.domain.emails import normalise_email
from user_service.domain.errors import AccountLocked, InvalidCredentials, InvalidRefreshToken
from user_service.domain.login_throttle import LoginThrottle
from user_service.domain.passwords import PasswordHasher
from user_service.domain.tokens import (
    MAX_REFRESH_TOKEN_LENGTH,
    TokenIssuer,
    TokenPair,
    hash_refresh_token,
    new_family_id,
)
from user_service.events.publisher import audit_actor, publish_audit_entry
from user_service.repository.models import User
from user_service.repository.refresh_tokens import RefreshTokenRepository
from user_service.repository.users import UserRepository


class AuthenticationService:
    """Turns credentials into token pairs and keeps refresh token families safe."""

    def __init__(
        self,
        session: AsyncSession,
        *,
        hasher: PasswordHasher,
        issuer: TokenIssuer,
        throttle: LoginThrottle,
        clock: Clock,
        publisher: EventPublisher,
    ) -> None:
        self.session = session
        self.users = UserRepository(session)
        self.refresh_tokens = RefreshTokenRepository(session)
        self.hasher = hasher
        self.issuer = issuer
        self.throttle = throttle
        self.clock = clock
        self.publisher = publisher

    async def login(self, email: str, password: str, *, audit: AuditContext) -> TokenPair:
        """A token pair for valid credentials.

        InvalidCredentials for an unknown email or a wrong password (counted
        towards the lockout); AccountLocked while the account is locked.
        Every attempt is audited: auth.login.succeeded or auth.login.failed
        (``reason`` unknown_account, account_locked or wrong_password).
        """
        now = self.clock.now()
        normalised = normalise_email(email)
        user = await self.users.get_by_email(normalised)
        if user is None:
            await self.hasher.verify_against_dummy(password)
            # No account to name: the entry keeps the email that was tried.
            await self._login_failed(
                audit.by(AuditActor(user_id=None, email=normalised)), None, "unknown_account"
            )
            raise InvalidCredentials()
        audit = audit.by(audit_actor(user))
        retry_after = self.throttle.retry_after(user.locked_until, now)
        if retry_after is not None:
            await self._login_failed(
                audit, user, "account_locked", {"retry_after_seconds": retry_after}
            )
            raise AccountLocked(retry_after)
        if not await self.hasher.verify(user.password_hash, password):
            failures = await self.users.record_failed_login(user.id)
            window = self.throttle.lock_window(failures)
            details: dict[str, str | int | bool | None] = {"failed_attempts": failures}
            if window is not None:
                await self.users.lock_until(user.id, now + window)
                details["locked_seconds"] = int(window.total_seconds())
            await self._login_failed(audit, user, "wrong_password", details)
            raise InvalidCredentials()

        if user.failed_login_count or user.locked_until is not None:
            await self.users.reset_failed_logins(user)
        if self.hasher.needs_rehash(user.password_hash):
            # The cost settings changed since this hash was made: upgrade it now
            # that the plain password is at hand.
            user.password_hash = await self.hasher.hash(password)
            await self.users.save(user)
        await self.refresh_tokens.delete_expired_of_user(user.id, now)
        await self._audit(
            audit.entry(AuditAction.LOGIN_SUCCEEDED, target_type="user", target_id=user.id)
        )
        return await self._issue_pair(user, family_id=new_family_id())

    async def refresh(self, refresh_token: str, *, audit: AuditContext) -> TokenPair:
        """Rotate ``refresh_token``: a new pair, the old token marked used.

        Presenting a used token means it leaked (or a client misbehaves): the
        whole family is revoked, so the thief's newer token dies too, and the
        reuse is audited (auth.refresh_token.reused).
        """
        now = self.clock.now()
        if not refresh_token or len(refresh_token) > MAX_REFRESH_TOKEN_LENGTH:
            raise InvalidRefreshToken()
        stored = await self.refresh_tokens.get_by_hash(hash_refresh_token(refresh_token))
        if stored is None or stored.revoked_at is not None or stored.expires_at <= now:
            raise InvalidRefreshToken()
        if stored.used_at is not None or not await self.refresh_tokens.mark_used(stored.id, now):
            await self.refresh_tokens.revoke_family(stored.family_id, now)
            owner = await self.users.get(stored.user_id)
            if owner is not None:
                audit = audit.by(audit_actor(owner))
            await self._audit(
                audit.entry(
                    AuditAction.REFRESH_TOKEN_REUSED,
                    outcome=AuditOutcome.FAILURE,
                    target_type="user",
                    target_id=stored.user_id,
                    details={"family_revoked": True},
                )
            )
            raise InvalidRefreshToken()
        user = await self.users.get(stored.user_id)
        if user is None:
            raise InvalidRefreshToken()
        return await self._issue_pair(user, family_id=stored.family_id)

    async def logout(self, refresh_token: str) -> None:
        """End the login session of ``refresh_token`` (unknown tokens are ignored)."""
        if not refresh_token or len(refresh_token) > MAX_REFRESH_TOKEN_LENGTH:
            return
        stored = await self.refresh_tokens.get_by_hash(hash_refresh_token(refresh_token))
        if stored is not None:
            await self.refresh_tokens.revoke_family(stored.family_id, self.clock.now())

    async def _login_failed(
        self,
        audit: AuditContext,
        user: User | None,
        reason: str,
        details: AuditDetails | None = None,
    ) -> None:
        await self._audit(
            audit.entry(
                AuditAction.LOGIN_FAILED,
                outcome=AuditOutcome.FAILURE,
                target_type="user" if user is not None else None,
                target_id=user.id if user is not None else None,
                details={"reason": reason, **(details or {})},
            )
        )

    async def _audit(self, entry: AuditRecorded) -> None:
        await publish_audit_entry(self.publisher, self.session, entry)

    async def _issue_pair(self, user: User, *, family_id: str) -> TokenPair:
        now = self.clock.now()
        refresh = self.issuer.refresh_token(now)
        await self.refresh_tokens.add(
            user_id=user.id,
            token_hash=refresh.token_hash,
            family_id=family_id,
            now=now,
            expires_at=refresh.expires_at,
        )
        return TokenPair(
            access_token=self.issuer.access_token(
                user_id=user.id, role=user.role, email=user.email, now=now
            ),
            expires_in=self.issuer.access_ttl_seconds,
            refresh_token=refresh.secret,
        )
