"""The user service app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from meshmart_common.app import create_app
from meshmart_common.auth import StaticKeySource, jwks_document
from meshmart_common.live_config import COMMON_LIVE_KEYS
from meshmart_common.messaging.lifespan import bus_factory, messaging_lifespan
from user_service.api import addresses, auth, jwks, users
from user_service.api.deps import Components
from user_service.domain.clock import SystemClock
from user_service.domain.login_throttle import LoginThrottle
from user_service.domain.passwords import password_hasher
from user_service.domain.signing_keys import load_signing_key
from user_service.domain.tokens import TokenIssuer
from user_service.events.publisher import user_event_publisher
from user_service.settings import Settings

OPENAPI_TAGS = [
    {"name": "auth", "description": "Registration, login and refresh tokens."},
    {"name": "users", "description": "The caller's profile and password; the account list."},
    {"name": "addresses", "description": "The caller's shipping addresses."},
    {"name": "keys", "description": "Public keys that verify access tokens."},
]


def build_app(settings: Settings) -> FastAPI:
    """Create the user app for settings; ConfigurationError when it cannot start safely."""
    key = load_signing_key(settings)
    document = jwks_document([key])
    hasher = password_hasher(settings)
    # One publisher per app: its commit signal wakes this app's outbox relay.
    publisher = user_event_publisher()

    @asynccontextmanager
    async def warm_password_hasher(_app: FastAPI) -> AsyncIterator[None]:
        await hasher.warm_up()
        yield

    app = create_app(
        settings,
        title="MeshMart user service",
        description=(
            "Accounts, tokens, profiles and addresses. Issues RS256 access tokens and "
            "publishes their public keys at /.well-known/jwks.json."
        ),
        routers=[auth.router, users.router, addresses.router],
        root_routers=[jwks.router],
        lifespan_hooks=[
            warm_password_hasher,
            # The user service publishes (the outbox relay) and consumes nothing.
            messaging_lifespan(
                bus_factory(settings, settings.var_dir),
                publisher=publisher,
                relay_settings=settings.relay_settings(),
            ),
        ],
        # The service verifies its own tokens without fetching its own JWKS over HTTP.
        key_source=StaticKeySource(document),
        openapi_tags=OPENAPI_TAGS,
        live_keys=(*COMMON_LIVE_KEYS, "rate_limit_login_per_minute"),
    )
    app.state.jwks = document
    app.state.components = Components(
        settings=settings,
        hasher=hasher,
        issuer=TokenIssuer(
            key,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            access_ttl_seconds=settings.access_token_ttl_seconds,
            refresh_ttl_seconds=settings.refresh_token_ttl_seconds,
        ),
        throttle=LoginThrottle(
            max_failures=settings.login_max_failures,
            base_seconds=settings.login_lockout_base_seconds,
            cap_seconds=settings.login_lockout_max_seconds,
        ),
        clock=SystemClock(),
        publisher=publisher,
    )
    return app


def app_factory() -> FastAPI:
    """Entry point for `uvicorn --factory user_service.main:app_factory`."""
    return build_app(Settings())
