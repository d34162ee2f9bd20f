"""Fixtures of the product service tests (the shared ones come from meshmart_common.testing)."""

from collections.abc import Awaitable, Callable
from itertools import count
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import MetaData

from meshmart_common.testing import TestContext
from product_service.main import build_app
from product_service.repository.models import Base
from product_service.settings import Settings

Factory = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
def service_metadata() -> MetaData:
    """The product service's tables."""
    return Base.metadata


@pytest.fixture
def service_app_factory() -> Callable[[TestContext], FastAPI]:
    """Build the product app on the test database."""

    def factory(ctx: TestContext) -> FastAPI:
        return build_app(
            ctx.settings(
                Settings,
                # The bus file of this test only: never var/.
                local_bus_path=ctx.tmp_path / "bus.db",
                outbox_poll_interval_ms=20,
                consumer_retry_base_seconds=0.05,
                consumer_retry_max_seconds=0.2,
            )
        )

    return factory


@pytest.fixture
def create_category(client: AsyncClient, admin_headers: dict[str, str]) -> Factory:
    """``await create_category(slug=..., name=...)`` -> the created category, via the API."""
    numbers = count(1)

    async def create(**fields: Any) -> dict[str, Any]:
        n = next(numbers)
        body = {"slug": f"category-{n}", "name": f"Category {n}", **fields}
        response = await client.post("/api/v1/categories", json=body, headers=admin_headers)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    return create


@pytest.fixture
def create_product(
    client: AsyncClient, admin_headers: dict[str, str], create_category: Factory
) -> Factory:
    """``await create_product(title=..., price_cents=...)`` -> the created product, via the API.

    Without ``category_id`` the product goes into one shared default category.
    """
    numbers = count(1)
    default_category: dict[str, Any] = {}

    async def create(**fields: Any) -> dict[str, Any]:
        n = next(numbers)
        if "category_id" not in fields:
            if not default_category:
                default_category.update(await create_category(slug="default", name="Default"))
            fields["category_id"] = default_category["id"]
        body = {
            "sku": f"SKU-{n:04d}",
            "title": f"Product {n}",
            "description": f"Description of product {n}",
            "price_cents": 1000 + n,
            **fields,
        }
        response = await client.post("/api/v1/products", json=body, headers=admin_headers)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    return create
