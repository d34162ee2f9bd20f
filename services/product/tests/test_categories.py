"""Categories: public list, admin create."""

from collections.abc import Awaitable, Callable
from typing import Any

from httpx import AsyncClient

from meshmart_common.testing import assert_problem

Factory = Callable[..., Awaitable[dict[str, Any]]]


async def test_admin_creates_a_category(client: AsyncClient, admin_headers: dict[str, str]) -> None:
    response = await client.post(
        "/api/v1/categories",
        json={"slug": "board-games", "name": "Board Games", "description": "Tabletop fun."},
        headers=admin_headers,
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body == {
        "id": body["id"],
        "slug": "board-games",
        "name": "Board Games",
        "description": "Tabletop fun.",
    }
    assert response.headers["location"] == f"/api/v1/categories/{body['id']}"


async def test_categories_are_listed_by_name_without_a_token(
    client: AsyncClient, create_category: Factory
) -> None:
    await create_category(slug="toys", name="Toys")
    await create_category(slug="books", name="Books")
    await create_category(slug="electronics", name="Electronics")

    response = await client.get("/api/v1/categories")

    assert response.status_code == 200
    assert [c["name"] for c in response.json()] == ["Books", "Electronics", "Toys"]
    assert response.json()[0]["description"] == ""


async def test_duplicate_category_slug_is_a_conflict(
    client: AsyncClient, admin_headers: dict[str, str], create_category: Factory
) -> None:
    await create_category(slug="books", name="Books")
    response = await client.post(
        "/api/v1/categories", json={"slug": "books", "name": "More books"}, headers=admin_headers
    )
    assert_problem(response, 409)


async def test_category_slug_must_be_lowercase_letters_digits_and_dashes(
    client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    for slug in ["Books", "books and more", "", "x" * 65, "bücher"]:
        response = await client.post(
            "/api/v1/categories", json={"slug": slug, "name": "Books"}, headers=admin_headers
        )
        assert_problem(response, 422, field="slug")


async def test_customer_cannot_create_a_category(
    client: AsyncClient, customer_headers: dict[str, str]
) -> None:
    response = await client.post(
        "/api/v1/categories", json={"slug": "books", "name": "Books"}, headers=customer_headers
    )
    assert_problem(response, 403)
    assert (await client.get("/api/v1/categories")).json() == []


async def test_creating_a_category_without_a_token_is_unauthorized(client: AsyncClient) -> None:
    response = await client.post("/api/v1/categories", json={"slug": "books", "name": "Books"})
    assert_problem(response, 401)
