"""Admin changes of categories, products and stock leave an audit entry, with the change."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from httpx import AsyncClient

from meshmart_common.db import Database
from meshmart_common.events import AuditRecorded
from meshmart_common.testing import assert_problem, audit_entries
from product_service.repository.models import OutboxEvent
from services.product.tests.support import outbox

Factory = Callable[..., Awaitable[dict[str, Any]]]
PRODUCTS = "/api/v1/products"


def summary(entry: AuditRecorded) -> tuple[Any, ...]:
    return (entry.action, entry.target_type, entry.target_id, entry.details)


async def test_each_admin_change_is_audited_with_the_admin_and_the_request(
    client: AsyncClient,
    admin_headers: dict[str, str],
    create_category: Factory,
    database: Database,
) -> None:
    category = await create_category(slug="kitchen", name="Kitchen")
    created = await client.post(
        PRODUCTS,
        json={"sku": "KT-1", "title": "Kettle", "price_cents": 2999, "category_id": category["id"]},
        headers={**admin_headers, "X-Request-ID": "rq-create"},
    )
    assert created.status_code == 201, created.text
    product_id = created.json()["id"]
    path = f"{PRODUCTS}/{product_id}"
    edited = await client.patch(
        path, json={"title": "Kettle 2", "price_cents": 3199}, headers=admin_headers
    )
    assert edited.status_code == 200
    assert (
        await client.put(f"{path}/stock", json={"on_hand": 12}, headers=admin_headers)
    ).status_code == 200
    assert (await client.delete(path, headers=admin_headers)).status_code == 204

    entries = await audit_entries(database, OutboxEvent)
    pid = str(product_id)
    assert [summary(entry) for entry in entries] == [
        ("admin.category.created", "category", str(category["id"]), {"slug": "kitchen"}),
        ("admin.product.created", "product", pid, {"sku": "KT-1", "price_cents": 2999}),
        ("admin.product.updated", "product", pid, {"fields": "price_cents,title"}),
        ("admin.stock.adjusted", "product", pid, {"on_hand": 12, "previous_on_hand": 0}),
        ("admin.product.deleted", "product", pid, {"sku": "KT-1"}),
    ]
    assert {
        (e.service, e.outcome.value, e.actor_id, e.actor_email, e.actor_role) for e in entries
    } == {("product", "success", 1, "admin@example.com", "admin")}
    assert entries[1].request_id == "rq-create"
    published = await outbox(database, "audit.recorded")
    assert {(p.topic, p.event.source) for p in published} == {("audit-events", "/meshmart/product")}
    assert published[1].message_key == f"product:{product_id}"


async def test_refused_changes_leave_no_audit_entry(
    client: AsyncClient,
    admin_headers: dict[str, str],
    customer_headers: dict[str, str],
    create_product: Factory,
    database: Database,
) -> None:
    product = await create_product(sku="KEEP-1")
    before = await audit_entries(database, OutboxEvent)
    path = f"{PRODUCTS}/{product['id']}"

    duplicate = await client.post(
        PRODUCTS,
        json={
            "sku": "KEEP-1",
            "title": "Twin",
            "price_cents": 1,
            "category_id": product["category"]["id"],
        },
        headers=admin_headers,
    )
    assert_problem(duplicate, 409)
    assert_problem(
        await client.patch(path, json={"category_id": 999_999}, headers=admin_headers), 422
    )
    assert_problem(await client.delete(path, headers=customer_headers), 403)
    assert_problem(
        await client.put(f"{path}/stock", json={"on_hand": 5}, headers=customer_headers), 403
    )
    assert_problem(
        await client.post(
            "/api/v1/categories", json={"slug": "x", "name": "X"}, headers=customer_headers
        ),
        403,
    )

    assert await audit_entries(database, OutboxEvent) == before
