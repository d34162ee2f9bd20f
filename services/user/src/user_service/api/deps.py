"""Dependencies of the user API: the unit of work and the domain services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.db import ReadSessionDep, get_database
from user_service.domain.accounts import AccountService
from user_service.domain.addresses import AddressService
from user_service.domain.authentication import AuthenticationService
from user_service.domain.clock import Clock
from user_service.domain.errors import KeepsRecordedState
from user_service.domain.login_throttle import LoginThrottle
from user_service.domain.passwords import PasswordHasher
from user_service.domain.tokens import TokenIssuer
from user_service.settings import Settings


@dataclass(slots=True)
class Components:
    """The long-lived parts the request handlers share (``app.state.components``)."""

    settings: Settings
    hasher: PasswordHasher
    issuer: TokenIssuer
    throttle: LoginThrottle
    clock: Clock


def get_components(request: Request) -> Components:
    """The app's shared components."""
    components: Components = request.app.state.components
    return components


ComponentsDep = Annotated[Components, Depends(get_components)]


async def unit_of_work(request: Request) -> AsyncIterator[AsyncSession]:
    """A read-write session, committed before the response is sent.

    meshmart_common's SessionDep commits after the response has gone out, so
    a client could log in before its registration is committed; this one
    finishes first. Errors roll back, except KeepsRecordedState ones: their
    security bookkeeping (failed-login counts, revoked families) must stay.
    """
    async with get_database(request).sessionmaker() as session:
        try:
            yield session
        except KeepsRecordedState:
            await session.commit()
            raise
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


UnitOfWork = Annotated[AsyncSession, Depends(unit_of_work, scope="function")]


async def authentication_service(
    session: UnitOfWork, components: ComponentsDep
) -> AuthenticationService:
    """Login, refresh and logout on the request's unit of work."""
    return AuthenticationService(
        session,
        hasher=components.hasher,
        issuer=components.issuer,
        throttle=components.throttle,
        clock=components.clock,
    )


async def account_service(session: UnitOfWork, components: ComponentsDep) -> AccountService:
    """Account writes on the request's unit of work."""
    return AccountService(session, hasher=components.hasher, clock=components.clock)


async def account_reader(session: ReadSessionDep, components: ComponentsDep) -> AccountService:
    """Account reads on the read session (the replica when one is configured)."""
    return AccountService(session, hasher=components.hasher, clock=components.clock)


async def address_service(session: UnitOfWork, components: ComponentsDep) -> AddressService:
    """Address writes on the request's unit of work."""
    return AddressService(
        session,
        max_per_user=components.settings.max_addresses_per_user,
        clock=components.clock,
    )


async def address_reader(session: ReadSessionDep, components: ComponentsDep) -> AddressService:
    """Address reads on the read session."""
    return AddressService(
        session,
        max_per_user=components.settings.max_addresses_per_user,
        clock=components.clock,
    )


AuthenticationServiceDep = Annotated[AuthenticationService, Depends(authentication_service)]
AccountServiceDep = Annotated[AccountService, Depends(account_service)]
AccountReaderDep = Annotated[AccountService, Depends(account_reader)]
AddressServiceDep = Annotated[AddressService, Depends(address_service)]
AddressReaderDep = Annotated[AddressService, Depends(address_reader)]
