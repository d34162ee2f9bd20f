"""Reviews: one per user and product, 1-5 stars, kept in the product's rating counters."""

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import pytest
from httpx import AsyncClient

from meshmart_common.db import Database
from meshmart_common.testing import assert_problem
from product_service.domain.reviews import ReviewService
from product_service.repository.errors import DuplicateKey
from product_service.repository.models import Review
from product_service.repository.reviews import ReviewRepository

Factory = Callable[..., Awaitable[dict[str, Any]]]
TokenMaker = Callable[..., str]


def reviews_url(product_id: int) -> str:
    return f"/api/v1/products/{product_id}/reviews"


def bearer(make_token: TokenMaker, user_id: int, **kwargs: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user_id, **kwargs)}"}


async def test_customer_reviews_a_product(
    client: AsyncClient, customer_headers: dict[str, str], create_product: Factory
) -> None:
    product = await create_product()

    response = await client.post(
        reviews_url(product["id"]),
        json={"rating": 4, "title": "Solid", "body": "Does what it says."},
        headers=customer_headers,
    )

    assert response.status_code == 201, response.text
    review = response.json()
    assert review == {
        "id": review["id"],
        "product_id": product["id"],
        "user_id": 1001,
        "author": "customer",
        "rating": 4,
        "title": "Solid",
        "body": "Does what it says.",
        "verified": False,
        "created_at": review["created_at"],
    }
    assert datetime.fromisoformat(review["created_at"]).utcoffset() is not None


async def test_author_falls_back_to_the_user_id_without_an_email(
    client: AsyncClient, make_token: TokenMaker, create_product: Factory
) -> None:
    product = await create_product()
    response = await client.post(
        reviews_url(product["id"]), json={"rating": 5}, headers=bearer(make_token, 77)
    )
    assert response.status_code == 201, response.text
    assert response.json()["author"] == "user-77"
    assert response.json()["title"] is None
    assert response.json()["body"] is None


async def test_admin_may_review_too(
    client: AsyncClient, admin_headers: dict[str, str], create_product: Factory
) -> None:
    product = await create_product()
    response = await client.post(
        reviews_url(product["id"]), json={"rating": 2}, headers=admin_headers
    )
    assert response.status_code == 201
    assert response.json()["author"] == "admin"


async def test_reviews_update_the_products_average_and_count(
    client: AsyncClient, make_token: TokenMaker, create_product: Factory
) -> None:
    product = await create_product()
    for user_id, rating in [(2, 5), (3, 4), (4, 4)]:
        response = await client.post(
            reviews_url(product["id"]), json={"rating": rating}, headers=bearer(make_token, user_id)
        )
        assert response.status_code == 201

    read = (await client.get(f"/api/v1/products/{product['id']}")).json()
    assert read["rating_count"] == 3
    assert read["rating_avg"] == 4.33
    listed = (await client.get("/api/v1/products")).json()["items"][0]
    assert (listed["rating_avg"], listed["rating_count"]) == (4.33, 3)


async def test_rating_average_rounds_half_up_to_two_decimals(
    client: AsyncClient, make_token: TokenMaker, create_product: Factory
) -> None:
    product = await create_product()
    # 5 + 5 + 5 + 5 + 5 + 5 + 5 + 2 = 37 / 8 = 4.625
    for user_id, rating in enumerate([5, 5, 5, 5, 5, 5, 5, 2], start=10):
        response = await client.post(
            reviews_url(product["id"]), json={"rating": rating}, headers=bearer(make_token, user_id)
        )
        assert response.status_code == 201
    read = (await client.get(f"/api/v1/products/{product['id']}")).json()
    assert (read["rating_avg"], read["rating_count"]) == (4.63, 8)


async def test_second_review_by_the_same_user_is_a_conflict(
    client: AsyncClient, customer_headers: dict[str, str], create_product: Factory
) -> None:
    product = await create_product()
    first = await client.post(
        reviews_url(product["id"]), json={"rating": 5}, headers=customer_headers
    )
    assert first.status_code == 201

    second = await client.post(
        reviews_url(product["id"]), json={"rating": 1}, headers=customer_headers
    )

    assert_problem(second, 409)
    read = (await client.get(f"/api/v1/products/{product['id']}")).json()
    assert (read["rating_avg"], read["rating_count"]) == (5.0, 1)


async def test_duplicate_insert_racing_past_the_check_is_caught_by_the_constraint(
    create_product: Factory, database: Database
) -> None:
    product = await create_product()
    async with database.session() as session:
        await ReviewRepository(session).add(
            Review(product_id=product["id"], user_id=9, author="racer", rating=3)
        )
    with pytest.raises(DuplicateKey):
        async with database.session() as session:
            await ReviewRepository(session).add(
                Review(product_id=product["id"], user_id=9, author="racer", rating=4)
            )


@pytest.mark.parametrize("rating", [0, 6, -1, 4.5, "5", None, True])
async def test_rating_must_be_a_whole_number_from_one_to_five(
    client: AsyncClient, customer_headers: dict[str, str], create_product: Factory, rating: Any
) -> None:
    product = await create_product()
    response = await client.post(
        reviews_url(product["id"]), json={"rating": rating}, headers=customer_headers
    )
    assert_problem(response, 422, field="rating")


@pytest.mark.parametrize(("field", "length"), [("title", 121), ("body", 2001)])
async def test_review_title_and_body_have_length_limits(
    client: AsyncClient,
    customer_headers: dict[str, str],
    create_product: Factory,
    field: str,
    length: int,
) -> None:
    product = await create_product()
    response = await client.post(
        reviews_url(product["id"]),
        json={"rating": 3, field: "x" * length},
        headers=customer_headers,
    )
    assert_problem(response, 422, field=field)


async def test_reviewing_an_unknown_or_deleted_product_is_not_found(
    client: AsyncClient,
    customer_headers: dict[str, str],
    admin_headers: dict[str, str],
    create_product: Factory,
) -> None:
    assert_problem(
        await client.post(reviews_url(4242), json={"rating": 3}, headers=customer_headers), 404
    )
    product = await create_product()
    await client.delete(f"/api/v1/products/{product['id']}", headers=admin_headers)
    response = await client.post(
        reviews_url(product["id"]), json={"rating": 3}, headers=customer_headers
    )
    assert_problem(response, 404)


async def test_reviewing_without_a_token_is_unauthorized(
    client: AsyncClient, create_product: Factory
) -> None:
    product = await create_product()
    assert_problem(await client.post(reviews_url(product["id"]), json={"rating": 3}), 401)


async def test_reviews_are_listed_newest_first_in_pages_without_a_token(
    client: AsyncClient, make_token: TokenMaker, create_product: Factory
) -> None:
    product = await create_product()
    other = await create_product()
    written = []
    for user_id in [2, 3, 4]:
        response = await client.post(
            reviews_url(product["id"]),
            json={"rating": 3, "title": f"by {user_id}"},
            headers=bearer(make_token, user_id, email=f"u{user_id}@example.com"),
        )
        written.append(response.json()["id"])
    await client.post(reviews_url(other["id"]), json={"rating": 1}, headers=bearer(make_token, 2))

    first = (await client.get(reviews_url(product["id"]), params={"page_size": 2})).json()
    second = (
        await client.get(reviews_url(product["id"]), params={"page_size": 2, "page": 2})
    ).json()

    assert [r["id"] for r in first["items"] + second["items"]] == written[::-1]
    assert [r["author"] for r in first["items"]] == ["u4", "u3"]
    assert (first["total"], first["page"], first["page_size"]) == (3, 1, 2)
    assert (second["total"], second["page"]) == (3, 2)


async def test_reviews_of_a_deleted_product_stay_readable(
    client: AsyncClient,
    customer_headers: dict[str, str],
    admin_headers: dict[str, str],
    create_product: Factory,
) -> None:
    product = await create_product()
    await client.post(reviews_url(product["id"]), json={"rating": 4}, headers=customer_headers)
    await client.delete(f"/api/v1/products/{product['id']}", headers=admin_headers)
    listing = (await client.get(reviews_url(product["id"]))).json()
    assert [r["rating"] for r in listing["items"]] == [4]


async def test_listing_reviews_checks_the_product_and_paging(client: AsyncClient) -> None:
    assert_problem(await client.get(reviews_url(4242)), 404)
    assert_problem(await client.get(reviews_url(0)), 422, field="product_id")
    assert_problem(
        await client.get(reviews_url(1), params={"page_size": 101}), 422, field="page_size"
    )


async def test_purchase_verification_marks_only_that_users_review(
    client: AsyncClient, make_token: TokenMaker, create_product: Factory, database: Database
) -> None:
    product = await create_product()
    for user_id in [2, 3]:
        await client.post(
            reviews_url(product["id"]), json={"rating": 5}, headers=bearer(make_token, user_id)
        )

    async with database.session() as session:
        marked = await ReviewService(session).mark_verified_purchase(product["id"], 3)
        missing = await ReviewService(session).mark_verified_purchase(product["id"], 99)

    assert (marked, missing) == (True, False)
    items = (await client.get(reviews_url(product["id"]))).json()["items"]
    assert {r["user_id"]: r["verified"] for r in items} == {2: False, 3: True}
