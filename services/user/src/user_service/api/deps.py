"""Dependencies of the user API: the domain services on the request's session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from meshmart_common.db import ReadSessionDep, SessionDep
from meshmart_common.messaging.outbox import EventPublisher
from user_service.domain.accounts import AccountService
from user_service.domain.addresses import AddressService
from user_service.domain.authentication import AuthenticationService
from user_service.domain.clock import Clock
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
    publisher: EventPublisher


async def get_components(request: Request) -> Components:
    """The app's shared components."""
    components: Components = request.app.state.components
    return components


ComponentsDep = Annotated[Components, Depends(get_components)]


async def authentication_service(
    session: SessionDep, components: ComponentsDep
) -> AuthenticationService:
    """Login, refresh and logout on the request's session."""
    return AuthenticationService(
        session,
        hasher=components.hasher,
        issuer=components.issuer,
        throttle=components.throttle,
        clock=components.clock,
        publisher=components.publisher,
    )


async def account_service(session: SessionDep, components: ComponentsDep) -> AccountService:
    """Account writes on the request's session (events go to its outbox)."""
    return AccountService(
        session,
        hasher=components.hasher,
        clock=components.clock,
        publisher=components.publisher,
    )


async def account_reader(session: ReadSessionDep, components: ComponentsDep) -> AccountService:
    """Account reads on the read session (the replica when one is configured)."""
    return AccountService(session, hasher=components.hasher, clock=components.clock)


async def address_service(session: SessionDep, components: ComponentsDep) -> AddressService:
    """Address writes on the request's session."""
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
