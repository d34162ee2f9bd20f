"""Fixtures of the user service tests (the shared ones come from meshmart_common.testing)."""

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import MetaData

from meshmart_common.testing import TestContext
from user_service.main import build_app
from user_service.repository.models import Base
from user_service.settings import Settings

DEFAULT_PASSWORD = "s3cret-passw0rd"

Account = dict[str, Any]
"""A registered and logged-in account: id, email, password, access_token,
refresh_token, headers (the Authorization header)."""
NewAccount = Callable[..., Awaitable[Account]]


def settings_for(ctx: TestContext) -> Settings:
    """Settings on the test database, signing with the test key, with cheap argon2.

    The local bus lives in the test's tmp_path, so no test shares a bus.
    """
    return ctx.settings(
        Settings,
        jwt_private_key_file=ctx.signing_key_path,
        local_bus_path=ctx.tmp_path / "bus.db",
        argon2_time_cost=1,
        argon2_memory_cost=1024,
        argon2_parallelism=1,
    )


@pytest.fixture
def service_metadata() -> MetaData:
    """The user service's tables."""
    return Base.metadata


@pytest.fixture
def service_app_factory() -> Callable[[TestContext], FastAPI]:
    """Build the user app on the test database, signing with the test key."""

    def factory(ctx: TestContext) -> FastAPI:
        return build_app(settings_for(ctx))

    return factory


@pytest.fixture
def settings(test_context: TestContext) -> Settings:
    """Settings equal to the app's (for the seeder and direct database checks)."""
    return settings_for(test_context)


class ManualClock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.current = datetime.now(UTC)

    def now(self) -> datetime:
        """The manual time."""
        return self.current


@pytest.fixture
def advance_clock(app: FastAPI) -> Callable[[float], None]:
    """``advance_clock(seconds)`` moves the app's clock forward (lock windows, expiry)."""
    clock = ManualClock()
    app.state.components.clock = clock

    def advance(seconds: float) -> None:
        clock.current += timedelta(seconds=seconds)

    return advance


@pytest.fixture
def new_account(client: AsyncClient) -> NewAccount:
    """``await new_account(email, password=..., full_name=...)``: register and log in."""

    async def create(
        email: str, password: str = DEFAULT_PASSWORD, full_name: str | None = None
    ) -> Account:
        body: dict[str, Any] = {"email": email, "password": password}
        if full_name is not None:
            body["full_name"] = full_name
        registered = await client.post("/api/v1/auth/register", json=body)
        assert registered.status_code == 201, registered.text
        tokens = await client.post(
            "/api/v1/auth/login", json={"email": email, "password": password}
        )
        assert tokens.status_code == 200, tokens.text
        pair = tokens.json()
        return {
            "id": registered.json()["id"],
            "email": registered.json()["email"],
            "password": password,
            "access_token": pair["access_token"],
            "refresh_token": pair["refresh_token"],
            "headers": {"Authorization": f"Bearer {pair['access_token']}"},
        }

    return create
