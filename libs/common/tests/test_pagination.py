"""Page-number pagination: bounded parameters and one Page shape."""

from __future__ import annotations

import pytest
from httpx import AsyncClient

from meshmart_common.pagination import MAX_PAGE_SIZE, Page, PageParams
from meshmart_common.testing import assert_problem


async def create_widgets(client: AsyncClient, count: int) -> list[int]:
    ids = []
    for i in range(count):
        response = await client.post("/api/v1/widgets", json={"name": f"w{i}"})
        ids.append(response.json()["id"])
    return ids


async def test_list_returns_the_requested_page(client: AsyncClient) -> None:
    ids = await create_widgets(client, 5)
    response = await client.get("/api/v1/widgets", params={"page": 2, "page_size": 2})
    assert response.json() == {
        "items": [{"id": ids[2], "name": "w2"}, {"id": ids[3], "name": "w3"}],
        "total": 5,
        "page": 2,
        "page_size": 2,
    }


async def test_last_partial_page_and_page_past_the_end(client: AsyncClient) -> None:
    ids = await create_widgets(client, 5)
    last = await client.get("/api/v1/widgets", params={"page": 3, "page_size": 2})
    assert [w["id"] for w in last.json()["items"]] == [ids[4]]
    beyond = await client.get("/api/v1/widgets", params={"page": 9, "page_size": 2})
    assert beyond.json() == {"items": [], "total": 5, "page": 9, "page_size": 2}


async def test_defaults_are_page_1_of_20(client: AsyncClient) -> None:
    response = await client.get("/api/v1/widgets")
    assert response.json() == {"items": [], "total": 0, "page": 1, "page_size": 20}


async def test_largest_page_size_is_accepted(client: AsyncClient) -> None:
    response = await client.get("/api/v1/widgets", params={"page_size": MAX_PAGE_SIZE})
    assert response.json()["page_size"] == 100


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page_size": 101}, "page_size"),
        ({"page_size": 0}, "page_size"),
        ({"page": 0}, "page"),
        ({"page": -1}, "page"),
        ({"page": 1_000_001}, "page"),
        ({"page": "two"}, "page"),
    ],
    ids=["size-101", "size-0", "page-0", "page-negative", "page-huge", "page-not-int"],
)
async def test_out_of_bounds_parameters_are_422(
    client: AsyncClient, params: dict[str, int | str], field: str
) -> None:
    response = await client.get("/api/v1/widgets", params=params)
    body = assert_problem(response, 422, field=field)
    assert body["errors"][0]["location"] == "query"


def test_page_params_offset() -> None:
    assert PageParams(page=1, page_size=20).offset == 0
    assert PageParams(page=3, page_size=25).offset == 50


def test_page_model_shape() -> None:
    page = Page[int](items=[1, 2], total=7, page=2, page_size=2)
    assert page.model_dump() == {"items": [1, 2], "total": 7, "page": 2, "page_size": 2}
    schema = Page[int].model_json_schema()
    assert schema["required"] == ["items", "total", "page", "page_size"]
    assert schema["properties"]["items"] == {
        "items": {"type": "integer"},
        "title": "Items",
        "type": "array",
    }
