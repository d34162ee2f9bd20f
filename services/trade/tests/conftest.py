"""Fixtures of the trade service tests (the shared ones come from meshmart_common.testing)."""

import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import MetaData, update
from sqlalchemy.engine import make_url

from meshmart_common.db import Database
from meshmart_common.testing import TestContext
from trade_service.main import build_app
from trade_service.repository.models import Base, CouponCampaign
from trade_service.settings import Settings


@pytest.fixture
def service_metadata() -> MetaData:
    """The trade service's tables."""
    return Base.metadata


@pytest.fixture
def database_url(database_url: str) -> str:
    """The shared fixture's database, with a SQLite file switched to WAL before any test uses it.

    Every new connection of meshmart_common.db runs ``PRAGMA journal_mode=WAL``;
    on a file still in rollback-journal mode (the shared fixture creates the
    tables without it) two first connections doing that at once, such as the
    app's outbox relay at start-up and a test's own Database, make one fail
    with "database is locked". Once the file is in WAL the pragma is a no-op.
    """
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database:
        with closing(sqlite3.connect(url.database)) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
    return database_url


@pytest.fixture
def service_app_factory() -> Callable[[TestContext], FastAPI]:
    """Build the trade app on the test database."""

    def factory(ctx: TestContext) -> FastAPI:
        # The local bus in the test's own folder: each test has a bus of its own.
        return build_app(ctx.settings(Settings, local_bus_path=ctx.tmp_path / "bus.db"))

    return factory


# --- fixtures added with the trade API ----------------------------------------------

Factory = Callable[..., Awaitable[dict[str, Any]]]
CUSTOMER_ID = 1001
"""The user id of the shared ``customer_headers`` token."""


def bearer(make_token: Callable[..., str], user_id: int) -> dict[str, str]:
    """Authorization header of customer ``user_id``."""
    return {"Authorization": f"Bearer {make_token(user_id)}"}


@pytest.fixture
def create_campaign(client: AsyncClient, admin_headers: dict[str, str]) -> Factory:
    """``await create_campaign(code=..., discount_type=...)`` -> the campaign, via the API.

    Defaults: 10% off, no minimum spend, 100 coupons, 1 per customer, open
    from yesterday for 30 days.
    """
    numbers = count(1)

    async def create(**fields: Any) -> dict[str, Any]:
        n = next(numbers)
        now = datetime.now(UTC)
        body = {
            "code": f"CAMP-{n}",
            "name": f"Campaign {n}",
            "discount_type": "percent",
            "discount_value": 10,
            "min_spend_cents": 0,
            "total_quantity": 100,
            "per_user_limit": 1,
            "starts_at": (now - timedelta(days=1)).isoformat(),
            "ends_at": (now + timedelta(days=30)).isoformat(),
            **fields,
        }
        response = await client.post("/api/v1/coupon-campaigns", json=body, headers=admin_headers)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    return create


@pytest.fixture
def claim_coupon(client: AsyncClient, make_token: Callable[..., str]) -> Factory:
    """``await claim_coupon(code, user_id=1001)`` -> the claimed coupon, via the API."""

    async def claim(code: str, user_id: int = CUSTOMER_ID) -> dict[str, Any]:
        response = await client.post(
            "/api/v1/coupons/claim", json={"code": code}, headers=bearer(make_token, user_id)
        )
        assert response.status_code == 201, response.text
        claimed: dict[str, Any] = response.json()
        return claimed

    return claim


@pytest.fixture
def grant_points(client: AsyncClient, admin_headers: dict[str, str]) -> Factory:
    """``await grant_points(points, user_id=1001)`` -> the balance after the grant, via the API."""

    async def grant(points: int, user_id: int = CUSTOMER_ID) -> dict[str, Any]:
        response = await client.post(
            "/api/v1/points/grants",
            json={"user_id": user_id, "points": points},
            headers=admin_headers,
        )
        assert response.status_code == 201, response.text
        granted: dict[str, Any] = response.json()
        return granted

    return grant


EndCampaign = Callable[[int], Awaitable[None]]


@pytest.fixture
def end_campaign(database: Database) -> EndCampaign:
    """``await end_campaign(campaign_id)``: move the campaign's window into the past."""

    async def end(campaign_id: int) -> None:
        now = datetime.now(UTC)
        async with database.session() as session:
            await session.execute(
                update(CouponCampaign)
                .where(CouponCampaign.id == campaign_id)
                .values(starts_at=now - timedelta(days=10), ends_at=now - timedelta(minutes=1))
            )

    return end
