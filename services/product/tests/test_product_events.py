"""Admin changes leave their events in the outbox, in the transaction of the change."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import select, update

from meshmart_common.db import Database
from meshmart_common.messaging.testing import eventually
from product_service.repository.models import OutboxEvent, Product
from services.product.tests.support import Published, outbox

Factory = Callable[..., Awaitable[dict[str, Any]]]
PRODUCTS = "/api/v1/products"
# Audit entries share the outbox; test_audit.py covers them.
DOMAIN_EVENTS = ("product.created", "product.updated", "stock.changed")


@pytest.fixture
async def category(create_category: Factory) -> dict[str, Any]:
    """A category to put products in."""
    return await create_category(slug="kitchen", name="Kitchen")


async def create(
    client: AsyncClient, headers: dict[str, str], category_id: int, **overrides: Any
) -> dict[str, Any]:
    body = {
        "sku": "KT-0001",
        "title": "Kettle",
        "price_cents": 2999,
        "category_id": category_id,
        "stock": 4,
        **overrides,
    }
    response = await client.post(PRODUCTS, json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def product_data(product: dict[str, Any], *, deleted: bool = False) -> dict[str, Any]:
    return {
        "product_id": product["id"],
        "sku": product["sku"],
        "title": product["title"],
        "price_cents": product["price_cents"],
        "category_id": product["category"]["id"],
        "deleted": deleted,
    }


def summary(rows: list[Published]) -> list[tuple[str, str, str | None, dict[str, Any]]]:
    return [(row.event_type, row.message_key, row.event.subject, row.data) for row in rows]


async def test_creating_a_product_publishes_product_created(
    client: AsyncClient,
    admin_headers: dict[str, str],
    category: dict[str, Any],
    database: Database,
) -> None:
    product = await create(client, admin_headers, category["id"])

    rows = await outbox(database, *DOMAIN_EVENTS)
    key = str(product["id"])
    assert summary(rows) == [("product.created", key, key, product_data(product))]
    row = rows[0]
    assert row.topic == "product-events"
    assert row.event.type == "product.created"
    assert row.event.source == "/meshmart/product"
    assert row.event.specversion == "1.0"


async def test_editing_and_deleting_publish_product_updated(
    client: AsyncClient,
    admin_headers: dict[str, str],
    category: dict[str, Any],
    create_category: Factory,
    database: Database,
) -> None:
    product = await create(client, admin_headers, category["id"])
    shelf = await create_category(slug="tea", name="Tea")

    patched = await client.patch(
        f"{PRODUCTS}/{product['id']}",
        json={"title": "Electric Kettle", "price_cents": 3499, "category_id": shelf["id"]},
        headers=admin_headers,
    )
    assert patched.status_code == 200, patched.text
    deleted = await client.delete(f"{PRODUCTS}/{product['id']}", headers=admin_headers)
    assert deleted.status_code == 204

    key = str(product["id"])
    edited = patched.json()
    assert edited["category"]["id"] == shelf["id"]
    assert summary(await outbox(database, "product.updated")) == [
        ("product.updated", key, key, product_data(edited)),
        ("product.updated", key, key, product_data(edited, deleted=True)),
    ]


async def test_setting_stock_publishes_stock_changed(
    client: AsyncClient,
    admin_headers: dict[str, str],
    category: dict[str, Any],
    database: Database,
) -> None:
    product = await create(client, admin_headers, category["id"], stock=4)

    response = await client.put(
        f"{PRODUCTS}/{product['id']}/stock", json={"on_hand": 12}, headers=admin_headers
    )

    assert response.status_code == 200, response.text
    key = str(product["id"])
    assert summary(await outbox(database, "stock.changed")) == [
        (
            "stock.changed",
            key,
            key,
            {"product_id": product["id"], "on_hand": 12, "reserved": 0, "reason": "adjusted"},
        )
    ]


async def test_a_refused_change_leaves_no_event(
    client: AsyncClient,
    admin_headers: dict[str, str],
    category: dict[str, Any],
    database: Database,
) -> None:
    product = await create(client, admin_headers, category["id"])
    before = summary(await outbox(database, *DOMAIN_EVENTS))

    duplicate = await client.post(
        PRODUCTS,
        json={
            "sku": "KT-0001",
            "title": "Another",
            "price_cents": 1,
            "category_id": category["id"],
        },
        headers=admin_headers,
    )
    unknown_category = await client.patch(
        f"{PRODUCTS}/{product['id']}", json={"category_id": 999_999}, headers=admin_headers
    )
    await client.delete(f"{PRODUCTS}/{product['id']}", headers=admin_headers)
    deleted_again = await client.delete(f"{PRODUCTS}/{product['id']}", headers=admin_headers)
    stock_of_deleted = await client.put(
        f"{PRODUCTS}/{product['id']}/stock", json={"on_hand": 1}, headers=admin_headers
    )

    assert (duplicate.status_code, unknown_category.status_code) == (409, 422)
    assert (deleted_again.status_code, stock_of_deleted.status_code) == (404, 404)
    events = summary(await outbox(database, *DOMAIN_EVENTS))
    assert events[: len(before)] == before
    assert [event_type for event_type, *_ in events[len(before) :]] == ["product.updated"]


async def test_stock_below_the_reserved_units_is_refused_without_an_event(
    client: AsyncClient,
    admin_headers: dict[str, str],
    category: dict[str, Any],
    database: Database,
) -> None:
    product = await create(client, admin_headers, category["id"], stock=5)
    async with database.session() as session:
        await session.execute(update(Product).where(Product.id == product["id"]).values(reserved=3))

    refused = await client.put(
        f"{PRODUCTS}/{product['id']}/stock", json={"on_hand": 2}, headers=admin_headers
    )
    accepted = await client.put(
        f"{PRODUCTS}/{product['id']}/stock", json={"on_hand": 3}, headers=admin_headers
    )

    assert (refused.status_code, accepted.status_code) == (409, 200)
    assert [row.data for row in await outbox(database, "stock.changed")] == [
        {"product_id": product["id"], "on_hand": 3, "reserved": 3, "reason": "adjusted"}
    ]


async def test_the_relay_sends_what_the_outbox_holds(
    client: AsyncClient,
    admin_headers: dict[str, str],
    category: dict[str, Any],
    database: Database,
) -> None:
    await create(client, admin_headers, category["id"])

    async def all_sent() -> bool:
        async with database.session(read_only=True) as session:
            rows = list(await session.scalars(select(OutboxEvent)))
        return bool(rows) and all(row.sent_at is not None and row.message_id for row in rows)

    assert await eventually(all_sent, what="the outbox rows being sent") is True
