"""GET /products: text, category and price filters, every sort order, pagination."""

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from httpx import AsyncClient

from meshmart_common.testing import assert_problem

Factory = Callable[..., Awaitable[dict[str, Any]]]
TokenMaker = Callable[..., str]
PRODUCTS = "/api/v1/products"


@pytest.fixture
async def shelf(
    client: AsyncClient, create_category: Factory, create_product: Factory, make_token: TokenMaker
) -> dict[str, dict[str, Any]]:
    """Five products in two categories, three of them reviewed (ratings 5, 3 and 4)."""
    electronics = await create_category(slug="electronics", name="Electronics")
    books = await create_category(slug="books", name="Books")
    e, b = electronics["id"], books["id"]
    products = {
        "headphones": await create_product(
            title="Wireless Headphones", description="Over-ear.", price_cents=19999, category_id=e
        ),
        "charger": await create_product(
            title="USB-C Charger",
            description="Charges 100% in an hour.",
            price_cents=3999,
            category_id=e,
        ),
        "cookbook": await create_product(
            title="Python Cookbook",
            description="Recipes; pairs well with HEADPHONES.",
            price_cents=4599,
            category_id=b,
        ),
        "handbook": await create_product(
            title="Data_Science Handbook",
            description="Statistics.",
            price_cents=2999,
            category_id=b,
        ),
        "atlas": await create_product(
            title="Atlas of Birds", description="Illustrated.", price_cents=2999, category_id=b
        ),
    }
    ratings = {"headphones": [5], "charger": [3], "cookbook": [4, 4]}
    for name, stars in ratings.items():
        for user, rating in enumerate(stars, start=2):
            headers = {"Authorization": f"Bearer {make_token(user)}"}
            response = await client.post(
                f"{PRODUCTS}/{products[name]['id']}/reviews",
                json={"rating": rating},
                headers=headers,
            )
            assert response.status_code == 201, response.text
    return products


def ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


async def test_list_defaults_to_newest_first_with_summaries(
    client: AsyncClient, shelf: dict[str, dict[str, Any]]
) -> None:
    response = await client.get(PRODUCTS)
    body = response.json()
    assert body["total"] == 5
    assert body["page"] == 1
    assert body["page_size"] == 20
    assert ids(response) == sorted((p["id"] for p in shelf.values()), reverse=True)
    headphones = next(i for i in body["items"] if i["id"] == shelf["headphones"]["id"])
    assert headphones["title"] == "Wireless Headphones"
    assert headphones["price_cents"] == 19999
    assert headphones["currency"] == "USD"
    assert headphones["category"]["slug"] == "electronics"
    assert headphones["rating_avg"] == 5.0
    assert headphones["rating_count"] == 1


async def test_text_search_matches_title_or_description_in_any_case(
    client: AsyncClient, shelf: dict[str, dict[str, Any]]
) -> None:
    response = await client.get(PRODUCTS, params={"q": "headphones", "sort": "title"})
    assert ids(response) == [shelf["cookbook"]["id"], shelf["headphones"]["id"]]
    assert response.json()["total"] == 2
    assert ids(await client.get(PRODUCTS, params={"q": "  cOOKbook "})) == [shelf["cookbook"]["id"]]
    assert ids(await client.get(PRODUCTS, params={"q": "no such thing"})) == []


async def test_like_wildcards_in_the_search_text_match_literally(
    client: AsyncClient, shelf: dict[str, dict[str, Any]]
) -> None:
    assert ids(await client.get(PRODUCTS, params={"q": "%"})) == [shelf["charger"]["id"]]
    assert ids(await client.get(PRODUCTS, params={"q": "_"})) == [shelf["handbook"]["id"]]
    assert ids(await client.get(PRODUCTS, params={"q": "Data_S"})) == [shelf["handbook"]["id"]]
    assert ids(await client.get(PRODUCTS, params={"q": "a_a"})) == []
    assert ids(await client.get(PRODUCTS, params={"q": "\\"})) == []


async def test_search_text_longer_than_200_characters_is_rejected(client: AsyncClient) -> None:
    assert_problem(await client.get(PRODUCTS, params={"q": "x" * 201}), 422, field="q")
    assert (await client.get(PRODUCTS, params={"q": "x" * 200})).json()["total"] == 0


async def test_category_filter_takes_a_slug_or_an_id(
    client: AsyncClient, shelf: dict[str, dict[str, Any]]
) -> None:
    electronics = [shelf["headphones"]["id"], shelf["charger"]["id"]]
    by_slug = await client.get(PRODUCTS, params={"category": "electronics", "sort": "created_at"})
    assert ids(by_slug) == electronics
    assert by_slug.json()["total"] == 2
    category_id = shelf["headphones"]["category"]["id"]
    by_id = await client.get(PRODUCTS, params={"category": str(category_id), "sort": "created_at"})
    assert ids(by_id) == electronics
    unknown = await client.get(PRODUCTS, params={"category": "garden"})
    assert ids(unknown) == []
    assert unknown.json()["total"] == 0
    assert ids(await client.get(PRODUCTS, params={"category": "9" * 30})) == []


async def test_price_range_is_inclusive_and_combines_with_other_filters(
    client: AsyncClient, shelf: dict[str, dict[str, Any]]
) -> None:
    response = await client.get(
        PRODUCTS, params={"min_price": 2999, "max_price": 4599, "sort": "price"}
    )
    assert [i["price_cents"] for i in response.json()["items"]] == [2999, 2999, 3999, 4599]
    assert ids(await client.get(PRODUCTS, params={"min_price": 5000})) == [
        shelf["headphones"]["id"]
    ]
    combined = await client.get(
        PRODUCTS, params={"max_price": 4000, "category": "books", "q": "atlas"}
    )
    assert ids(combined) == [shelf["atlas"]["id"]]


async def test_min_price_above_max_price_is_a_problem(client: AsyncClient) -> None:
    response = await client.get(PRODUCTS, params={"min_price": 500, "max_price": 100})
    assert_problem(response, 422, field="min_price")


@pytest.mark.parametrize(
    "params",
    [{"min_price": -1}, {"max_price": -5}, {"min_price": "cheap"}, {"max_price": 1.5}],
)
async def test_price_bounds_must_be_non_negative_cents(
    client: AsyncClient, params: dict[str, Any]
) -> None:
    assert_problem(await client.get(PRODUCTS, params=params), 422, field=next(iter(params)))


@pytest.mark.parametrize("sort", ["cost", "-title", "price ", "", "PRICE", "--price"])
async def test_unknown_sort_is_a_field_error(client: AsyncClient, sort: str) -> None:
    assert_problem(await client.get(PRODUCTS, params={"sort": sort}), 422, field="sort")


async def test_sort_by_price_both_ways_breaks_ties_by_id(
    client: AsyncClient, shelf: dict[str, dict[str, Any]]
) -> None:
    ascending = (await client.get(PRODUCTS, params={"sort": "price"})).json()["items"]
    assert [i["price_cents"] for i in ascending] == [2999, 2999, 3999, 4599, 19999]
    assert [i["id"] for i in ascending[:2]] == [shelf["handbook"]["id"], shelf["atlas"]["id"]]
    descending = (await client.get(PRODUCTS, params={"sort": "-price"})).json()["items"]
    assert [i["price_cents"] for i in descending] == [19999, 4599, 3999, 2999, 2999]
    assert [i["id"] for i in descending[3:]] == [shelf["atlas"]["id"], shelf["handbook"]["id"]]


async def test_sort_by_rating_puts_unreviewed_products_lowest(
    client: AsyncClient, shelf: dict[str, dict[str, Any]]
) -> None:
    best_first = (await client.get(PRODUCTS, params={"sort": "-rating"})).json()["items"]
    assert [i["rating_avg"] for i in best_first] == [5.0, 4.0, 3.0, None, None]
    assert [i["id"] for i in best_first] == [
        shelf["headphones"]["id"],
        shelf["cookbook"]["id"],
        shelf["charger"]["id"],
        shelf["atlas"]["id"],
        shelf["handbook"]["id"],
    ]
    worst_first = (await client.get(PRODUCTS, params={"sort": "rating"})).json()["items"]
    assert [i["rating_avg"] for i in worst_first] == [None, None, 3.0, 4.0, 5.0]
    assert [i["rating_count"] for i in worst_first] == [0, 0, 1, 2, 1]


async def test_sort_by_creation_time_both_ways(
    client: AsyncClient, shelf: dict[str, dict[str, Any]]
) -> None:
    in_creation_order = [p["id"] for p in shelf.values()]
    oldest_first = await client.get(PRODUCTS, params={"sort": "created_at"})
    assert ids(oldest_first) == in_creation_order
    stamps = [i["created_at"] for i in oldest_first.json()["items"]]
    assert stamps == sorted(stamps)
    newest_first = await client.get(PRODUCTS, params={"sort": "-created_at"})
    assert ids(newest_first) == in_creation_order[::-1]


async def test_sort_by_title_is_alphabetical(
    client: AsyncClient, shelf: dict[str, dict[str, Any]]
) -> None:
    items = (await client.get(PRODUCTS, params={"sort": "title"})).json()["items"]
    assert [i["title"] for i in items] == [
        "Atlas of Birds",
        "Data_Science Handbook",
        "Python Cookbook",
        "USB-C Charger",
        "Wireless Headphones",
    ]


async def test_pages_split_the_results_without_overlap(
    client: AsyncClient, shelf: dict[str, dict[str, Any]]
) -> None:
    seen: list[int] = []
    for page, expected_size in [(1, 2), (2, 2), (3, 1)]:
        response = await client.get(
            PRODUCTS, params={"sort": "price", "page": page, "page_size": 2}
        )
        body = response.json()
        assert (body["total"], body["page"], body["page_size"]) == (5, page, 2)
        assert len(body["items"]) == expected_size
        seen += ids(response)
    assert seen == ids(await client.get(PRODUCTS, params={"sort": "price"}))
    beyond = (await client.get(PRODUCTS, params={"page": 4, "page_size": 2})).json()
    assert beyond["items"] == []
    assert beyond["total"] == 5


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page_size": 101}, "page_size"),
        ({"page_size": 0}, "page_size"),
        ({"page": 0}, "page"),
        ({"page": "two"}, "page"),
        ({"category": "c" * 65}, "category"),
    ],
)
async def test_out_of_range_paging_and_filters_are_field_errors(
    client: AsyncClient, params: dict[str, Any], field: str
) -> None:
    assert_problem(await client.get(PRODUCTS, params=params), 422, field=field)


@pytest.mark.parametrize("text", ["'; DROP TABLE products; --", "😀", "ü" * 200])
async def test_odd_search_text_is_matched_as_plain_text(
    client: AsyncClient, shelf: dict[str, dict[str, Any]], text: str
) -> None:
    response = await client.get(PRODUCTS, params={"q": text})
    assert ids(response) == []
    assert (await client.get(PRODUCTS)).json()["total"] == len(shelf)


async def test_search_text_with_a_nul_character_is_rejected(client: AsyncClient) -> None:
    assert_problem(await client.get(PRODUCTS, params={"q": "a\x00b"}), 422, field="q")
