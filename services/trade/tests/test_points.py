"""Points: the caller's balance and history, and admin grants."""

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import pytest
from httpx import AsyncClient

from meshmart_common.testing import assert_problem

Factory = Callable[..., Awaitable[dict[str, Any]]]
TokenMaker = Callable[..., str]
POINTS = "/api/v1/points"
GRANTS = "/api/v1/points/grants"


def bearer(make_token: TokenMaker, user_id: int) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user_id)}"}


async def test_a_new_customer_has_no_points(
    client: AsyncClient, customer_headers: dict[str, str]
) -> None:
    response = await client.get(POINTS, headers=customer_headers)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "balance": 0,
        "locked": 0,
        "available": 0,
        "history": {"items": [], "total": 0, "page": 1, "page_size": 20},
    }


async def test_admin_grants_points(
    client: AsyncClient, admin_headers: dict[str, str], customer_headers: dict[str, str]
) -> None:
    response = await client.post(
        GRANTS,
        json={"user_id": 1001, "points": 250, "reason": "sorry for the delay"},
        headers=admin_headers,
    )

    assert response.status_code == 201, response.text
    assert response.json() == {
        "user_id": 1001,
        "granted": 250,
        "balance": 250,
        "locked": 0,
        "available": 250,
    }
    points = (await client.get(POINTS, headers=customer_headers)).json()
    assert (points["balance"], points["locked"], points["available"]) == (250, 0, 250)
    [entry] = points["history"]["items"]
    assert entry == {
        "id": entry["id"],
        "delta": 250,
        "reason": "adjusted",
        "order_id": None,
        "created_at": entry["created_at"],
    }
    assert datetime.fromisoformat(entry["created_at"]).utcoffset() is not None


async def test_grants_add_up(
    client: AsyncClient, customer_headers: dict[str, str], grant_points: Factory
) -> None:
    await grant_points(100)
    second = await grant_points(1_000_000)
    assert second["balance"] == 1_000_100
    assert (await client.get(POINTS, headers=customer_headers)).json()["balance"] == 1_000_100


async def test_history_is_newest_first_in_pages(
    client: AsyncClient, customer_headers: dict[str, str], grant_points: Factory
) -> None:
    for points in [1, 2, 3]:
        await grant_points(points)

    first = (await client.get(POINTS, params={"page_size": 2}, headers=customer_headers)).json()
    second = (
        await client.get(POINTS, params={"page_size": 2, "page": 2}, headers=customer_headers)
    ).json()

    assert [e["delta"] for e in first["history"]["items"]] == [3, 2]
    assert [e["delta"] for e in second["history"]["items"]] == [1]
    assert (first["history"]["total"], first["history"]["page_size"]) == (3, 2)
    assert (second["history"]["page"], second["balance"]) == (2, 6)


async def test_customers_see_only_their_own_points(
    client: AsyncClient, make_token: TokenMaker, grant_points: Factory
) -> None:
    await grant_points(40, user_id=2)
    await grant_points(70, user_id=3)
    alice = (await client.get(POINTS, headers=bearer(make_token, 2))).json()
    bob = (await client.get(POINTS, headers=bearer(make_token, 3))).json()
    assert (alice["balance"], [e["delta"] for e in alice["history"]["items"]]) == (40, [40])
    assert (bob["balance"], [e["delta"] for e in bob["history"]["items"]]) == (70, [70])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": 1001, "points": 0}, "points"),
        ({"user_id": 1001, "points": 1_000_001}, "points"),
        ({"user_id": 1001, "points": 10.5}, "points"),
        ({"user_id": 1001, "points": "10"}, "points"),
        ({"user_id": 0, "points": 10}, "user_id"),
        ({"user_id": 2**31, "points": 10}, "user_id"),
        ({"user_id": "1001", "points": 10}, "user_id"),
        ({"user_id": 1001, "points": 10, "reason": "x" * 201}, "reason"),
        ({"user_id": 1001, "points": 10, "balance": 5}, "balance"),
        ({"points": 10}, "user_id"),
    ],
)
async def test_grant_body_is_validated(
    client: AsyncClient, admin_headers: dict[str, str], body: dict[str, Any], field: str
) -> None:
    assert_problem(await client.post(GRANTS, json=body, headers=admin_headers), 422, field=field)


async def test_only_admins_grant_points(
    client: AsyncClient, customer_headers: dict[str, str]
) -> None:
    body = {"user_id": 1001, "points": 10}
    assert_problem(await client.post(GRANTS, json=body, headers=customer_headers), 403)
    assert_problem(await client.post(GRANTS, json=body), 401)
    assert (await client.get(POINTS, headers=customer_headers)).json()["balance"] == 0


async def test_points_need_a_token_and_valid_paging(
    client: AsyncClient, customer_headers: dict[str, str]
) -> None:
    assert_problem(await client.get(POINTS), 401)
    assert_problem(
        await client.get(POINTS, params={"page": 0}, headers=customer_headers), 422, field="page"
    )
