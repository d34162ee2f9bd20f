"""Admin product management: create, edit, soft delete, stock; and malformed input."""

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import update

from meshmart_common.db import Database
from meshmart_common.testing import assert_problem
from product_service.repository.models import Product

Factory = Callable[..., Awaitable[dict[str, Any]]]
PRODUCTS = "/api/v1/products"


@pytest.fixture
async def category(create_category: Factory) -> dict[str, Any]:
    """A category to put products in."""
    return await create_category(slug="electronics", name="Electronics")


def product_body(category_id: int, **overrides: Any) -> dict[str, Any]:
    body = {
        "sku": "EL-0001",
        "title": "Noise-Cancelling Headphones",
        "description": "Over-ear, 30 h battery.",
        "price_cents": 19999,
        "category_id": category_id,
        "image_url": "https://images.example.com/el-0001.jpg",
        "stock": 7,
    }
    body.update(overrides)
    return body


async def test_admin_creates_a_product_and_reads_it_back(
    client: AsyncClient, admin_headers: dict[str, str], category: dict[str, Any]
) -> None:
    response = await client.post(PRODUCTS, json=product_body(category["id"]), headers=admin_headers)

    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["location"] == f"{PRODUCTS}/{created['id']}"
    assert created["sku"] == "EL-0001"
    assert created["title"] == "Noise-Cancelling Headphones"
    assert created["description"] == "Over-ear, 30 h battery."
    assert created["price_cents"] == 19999
    assert created["currency"] == "USD"
    assert created["category"] == {
        "id": category["id"],
        "slug": "electronics",
        "name": "Electronics",
    }
    assert created["image_url"] == "https://images.example.com/el-0001.jpg"
    assert created["stock"] == {"on_hand": 7, "reserved": 0, "available": 7}
    assert created["rating_avg"] is None
    assert created["rating_count"] == 0
    assert created["deleted"] is False
    assert datetime.fromisoformat(created["created_at"]).utcoffset() is not None

    read = await client.get(f"{PRODUCTS}/{created['id']}")
    assert read.status_code == 200
    assert read.json() == created
    assert datetime.fromisoformat(read.json()["updated_at"]).utcoffset() is not None


async def test_stock_and_description_and_image_default_when_left_out(
    client: AsyncClient, admin_headers: dict[str, str], category: dict[str, Any]
) -> None:
    body = {"sku": "BK-1", "title": "A Book", "price_cents": 1500, "category_id": category["id"]}
    response = await client.post(PRODUCTS, json=body, headers=admin_headers)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["stock"] == {"on_hand": 0, "reserved": 0, "available": 0}
    assert created["description"] == ""
    assert created["image_url"] is None


@pytest.mark.parametrize(
    "price",
    [-100, 0, 19.99, 20.0, "1999", True, None, 100_000_001, 2**70],
    ids=["negative", "zero", "float", "whole-float", "string", "bool", "null", "too-big", "huge"],
)
async def test_price_must_be_a_positive_whole_number_of_cents(
    client: AsyncClient, admin_headers: dict[str, str], category: dict[str, Any], price: Any
) -> None:
    response = await client.post(
        PRODUCTS, json=product_body(category["id"], price_cents=price), headers=admin_headers
    )
    assert_problem(response, 422, field="price_cents")
    assert (await client.get(PRODUCTS)).json()["total"] == 0


async def test_highest_allowed_price_is_one_million_dollars(
    client: AsyncClient, admin_headers: dict[str, str], category: dict[str, Any]
) -> None:
    response = await client.post(
        PRODUCTS, json=product_body(category["id"], price_cents=100_000_000), headers=admin_headers
    )
    assert response.status_code == 201
    assert response.json()["price_cents"] == 100_000_000


async def test_unknown_category_is_a_field_error(
    client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.post(PRODUCTS, json=product_body(999), headers=admin_headers)
    body = assert_problem(response, 422, field="category_id")
    assert "999" in body["detail"]


async def test_duplicate_sku_is_a_conflict(
    client: AsyncClient, admin_headers: dict[str, str], category: dict[str, Any]
) -> None:
    first = await client.post(PRODUCTS, json=product_body(category["id"]), headers=admin_headers)
    assert first.status_code == 201
    second = await client.post(
        PRODUCTS, json=product_body(category["id"], title="Other"), headers=admin_headers
    )
    assert_problem(second, 409)
    assert (await client.get(PRODUCTS)).json()["total"] == 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sku", "el-0001"),
        ("sku", "AB"),
        ("sku", "A" * 33),
        ("sku", "EL 0001"),
        ("title", ""),
        ("title", "   "),
        ("title", "t" * 201),
        ("title", "nul \x00 inside"),
        ("description", "d" * 5001),
        ("image_url", "ftp://example.com/a.jpg"),
        ("image_url", "not a url"),
        ("image_url", "https://example.com/" + "a" * 500),
        ("stock", -1),
        ("stock", 1.5),
        ("category_id", 0),
        ("category_id", 2**40),
        ("currency", "EUR"),
    ],
)
async def test_invalid_product_fields_are_field_errors(
    client: AsyncClient,
    admin_headers: dict[str, str],
    category: dict[str, Any],
    field: str,
    value: Any,
) -> None:
    body = {**product_body(category["id"]), field: value}
    response = await client.post(PRODUCTS, json=body, headers=admin_headers)
    assert_problem(response, 422, field=field)


async def test_unknown_fields_and_non_json_bodies_are_rejected(
    client: AsyncClient, admin_headers: dict[str, str], category: dict[str, Any]
) -> None:
    extra = await client.post(
        PRODUCTS, json=product_body(category["id"], price=19.99), headers=admin_headers
    )
    assert_problem(extra, 422, field="price")
    not_json = await client.post(
        PRODUCTS,
        content=b"{not json",
        headers={**admin_headers, "Content-Type": "application/json"},
    )
    assert_problem(not_json, 422)
    a_list = await client.post(PRODUCTS, json=[1, 2], headers=admin_headers)
    assert_problem(a_list, 422)


async def test_text_that_no_database_can_store_is_a_field_error(
    client: AsyncClient, admin_headers: dict[str, str], category: dict[str, Any]
) -> None:
    # A lone surrogate is valid JSON ("\\ud800") but not valid Unicode text.
    body = json.dumps(product_body(category["id"], title="bad \ud800 text")).encode()
    response = await client.post(
        PRODUCTS, content=body, headers={**admin_headers, "Content-Type": "application/json"}
    )
    assert_problem(response, 422, field="title")


async def test_customer_cannot_use_admin_product_routes(
    client: AsyncClient, customer_headers: dict[str, str], create_product: Factory
) -> None:
    product = await create_product()
    url = f"{PRODUCTS}/{product['id']}"
    body = product_body(product["category"]["id"], sku="NEW-1")
    assert_problem(await client.post(PRODUCTS, json=body, headers=customer_headers), 403)
    assert_problem(await client.patch(url, json={"title": "x"}, headers=customer_headers), 403)
    assert_problem(await client.delete(url, headers=customer_headers), 403)
    assert_problem(
        await client.put(f"{url}/stock", json={"on_hand": 1}, headers=customer_headers), 403
    )
    assert (await client.get(url)).json()["title"] == product["title"]


async def test_admin_routes_without_a_token_are_unauthorized(
    client: AsyncClient, create_product: Factory
) -> None:
    product = await create_product()
    url = f"{PRODUCTS}/{product['id']}"
    response = await client.post(PRODUCTS, json=product_body(product["category"]["id"]))
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"
    assert_problem(await client.patch(url, json={"title": "x"}), 401)
    assert_problem(await client.delete(url), 401)
    assert_problem(await client.put(f"{url}/stock", json={"on_hand": 1}), 401)
    bad_token = {"Authorization": "Bearer not-a-jwt"}
    assert_problem(await client.delete(url, headers=bad_token), 401)


async def test_unknown_product_is_not_found(
    client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    assert_problem(await client.get(f"{PRODUCTS}/4242"), 404)
    assert_problem(await client.patch(f"{PRODUCTS}/4242", json={}, headers=admin_headers), 404)
    assert_problem(await client.delete(f"{PRODUCTS}/4242", headers=admin_headers), 404)
    assert_problem(
        await client.put(f"{PRODUCTS}/4242/stock", json={"on_hand": 1}, headers=admin_headers),
        404,
    )


@pytest.mark.parametrize("product_id", ["0", "-1", "abc", "1.5", str(2**31), "9" * 40])
async def test_malformed_product_ids_are_field_errors(
    client: AsyncClient, admin_headers: dict[str, str], product_id: str
) -> None:
    assert_problem(await client.get(f"{PRODUCTS}/{product_id}"), 422, field="product_id")
    response = await client.delete(f"{PRODUCTS}/{product_id}", headers=admin_headers)
    assert_problem(response, 422, field="product_id")


async def test_patch_changes_only_the_fields_sent(
    client: AsyncClient,
    admin_headers: dict[str, str],
    create_product: Factory,
    create_category: Factory,
) -> None:
    product = await create_product(
        title="Old title", price_cents=1000, image_url="http://example.com/a.png"
    )
    books = await create_category(slug="books", name="Books")

    response = await client.patch(
        f"{PRODUCTS}/{product['id']}",
        json={"price_cents": 1250, "category_id": books["id"], "image_url": None},
        headers=admin_headers,
    )

    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["price_cents"] == 1250
    assert updated["category"] == {"id": books["id"], "slug": "books", "name": "Books"}
    assert updated["image_url"] is None
    assert updated["title"] == "Old title"
    assert updated["sku"] == product["sku"]
    assert updated["description"] == product["description"]
    assert updated["updated_at"] >= product["updated_at"]
    assert (await client.get(f"{PRODUCTS}/{product['id']}")).json() == updated


async def test_patch_rejects_nulls_floats_unknown_categories_and_taken_skus(
    client: AsyncClient, admin_headers: dict[str, str], create_product: Factory
) -> None:
    product = await create_product(sku="FIRST-1")
    await create_product(sku="SECOND-2")
    url = f"{PRODUCTS}/{product['id']}"

    assert_problem(
        await client.patch(url, json={"title": None}, headers=admin_headers), 422, field="title"
    )
    assert_problem(
        await client.patch(url, json={"price_cents": 9.99}, headers=admin_headers),
        422,
        field="price_cents",
    )
    assert_problem(
        await client.patch(url, json={"category_id": 999}, headers=admin_headers),
        422,
        field="category_id",
    )
    assert_problem(await client.patch(url, json={"sku": "SECOND-2"}, headers=admin_headers), 409)
    assert (await client.get(url)).json() == product


async def test_soft_deleted_product_is_hidden_from_lists_but_readable_by_id(
    client: AsyncClient, admin_headers: dict[str, str], create_product: Factory
) -> None:
    kept = await create_product(title="Kept")
    gone = await create_product(title="Gone")

    response = await client.delete(f"{PRODUCTS}/{gone['id']}", headers=admin_headers)

    assert response.status_code == 204
    assert response.content == b""
    listing = (await client.get(PRODUCTS)).json()
    assert [p["id"] for p in listing["items"]] == [kept["id"]]
    assert listing["total"] == 1
    assert (await client.get(PRODUCTS, params={"q": "Gone"})).json()["total"] == 0
    read = await client.get(f"{PRODUCTS}/{gone['id']}")
    assert read.status_code == 200
    assert read.json()["deleted"] is True
    assert read.json()["title"] == "Gone"


async def test_deleted_product_cannot_be_updated_deleted_or_restocked(
    client: AsyncClient, admin_headers: dict[str, str], create_product: Factory
) -> None:
    product = await create_product()
    url = f"{PRODUCTS}/{product['id']}"
    assert (await client.delete(url, headers=admin_headers)).status_code == 204

    assert_problem(await client.delete(url, headers=admin_headers), 404)
    assert_problem(await client.patch(url, json={"title": "New"}, headers=admin_headers), 404)
    assert_problem(
        await client.put(f"{url}/stock", json={"on_hand": 3}, headers=admin_headers), 404
    )
    assert (await client.get(url)).json()["title"] == product["title"]


async def test_admin_sets_stock_on_hand(
    client: AsyncClient, admin_headers: dict[str, str], create_product: Factory
) -> None:
    product = await create_product(stock=5)

    response = await client.put(
        f"{PRODUCTS}/{product['id']}/stock", json={"on_hand": 42}, headers=admin_headers
    )

    assert response.status_code == 200, response.text
    assert response.json()["stock"] == {"on_hand": 42, "reserved": 0, "available": 42}
    listed = (await client.get(PRODUCTS)).json()["items"][0]
    assert listed["available"] == 42


async def test_stock_cannot_drop_below_reserved_units(
    client: AsyncClient, admin_headers: dict[str, str], create_product: Factory, database: Database
) -> None:
    product = await create_product(stock=10)
    # Reservations arrive with the checkout saga; set the counter directly until then.
    async with database.session() as session:
        await session.execute(update(Product).where(Product.id == product["id"]).values(reserved=4))
    url = f"{PRODUCTS}/{product['id']}/stock"

    assert_problem(await client.put(url, json={"on_hand": 3}, headers=admin_headers), 409)
    assert (await client.get(f"{PRODUCTS}/{product['id']}")).json()["stock"] == {
        "on_hand": 10,
        "reserved": 4,
        "available": 6,
    }
    response = await client.put(url, json={"on_hand": 4}, headers=admin_headers)
    assert response.status_code == 200
    assert response.json()["stock"] == {"on_hand": 4, "reserved": 4, "available": 0}


@pytest.mark.parametrize("on_hand", [-1, 2.5, "7", None, 10**12])
async def test_stock_must_be_a_whole_non_negative_number(
    client: AsyncClient, admin_headers: dict[str, str], create_product: Factory, on_hand: Any
) -> None:
    product = await create_product(stock=5)
    response = await client.put(
        f"{PRODUCTS}/{product['id']}/stock", json={"on_hand": on_hand}, headers=admin_headers
    )
    assert_problem(response, 422, field="on_hand")
