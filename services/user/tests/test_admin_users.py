"""GET /api/v1/users: the admin's paginated account list."""

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from httpx import AsyncClient

from meshmart_common.testing import assert_problem

NewAccount = Callable[..., Awaitable[dict[str, Any]]]
USERS = "/api/v1/users"


async def register(client: AsyncClient, *emails: str) -> None:
    for email in emails:
        response = await client.post(
            "/api/v1/auth/register", json={"email": email, "password": "long enough"}
        )
        assert response.status_code == 201


async def test_admin_lists_accounts_by_id_one_page_at_a_time(
    client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    await register(client, "a@example.com", "b@example.com", "c@example.com")
    first = await client.get(USERS, headers=admin_headers, params={"page_size": 2})
    assert first.status_code == 200
    body = first.json()
    assert body["total"] == 3
    assert body["page"] == 1
    assert body["page_size"] == 2
    assert [u["email"] for u in body["items"]] == ["a@example.com", "b@example.com"]
    assert set(body["items"][0]) == {"id", "email", "full_name", "role", "created_at"}
    second = (
        await client.get(USERS, headers=admin_headers, params={"page": 2, "page_size": 2})
    ).json()
    assert [u["email"] for u in second["items"]] == ["c@example.com"]
    beyond = (await client.get(USERS, headers=admin_headers, params={"page": 9})).json()
    assert beyond["items"] == []
    assert beyond["total"] == 3


async def test_q_filters_emails_and_treats_like_wildcards_literally(
    client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    await register(client, "ann_lee@example.com", "annxlee@example.com", "bob%1@example.com")
    underscore = (await client.get(USERS, headers=admin_headers, params={"q": "ann_"})).json()
    assert [u["email"] for u in underscore["items"]] == ["ann_lee@example.com"]
    assert underscore["total"] == 1
    percent = (await client.get(USERS, headers=admin_headers, params={"q": "%"})).json()
    assert [u["email"] for u in percent["items"]] == ["bob%1@example.com"]
    case = (await client.get(USERS, headers=admin_headers, params={"q": "ANNX"})).json()
    assert [u["email"] for u in case["items"]] == ["annxlee@example.com"]


async def test_customers_may_not_list_accounts(
    client: AsyncClient, new_account: NewAccount, customer_headers: dict[str, str]
) -> None:
    account = await new_account("alice@example.com")
    body = assert_problem(await client.get(USERS, headers=account["headers"]), 403)
    assert body["detail"] == "This action needs the admin role."
    assert_problem(await client.get(USERS, headers=customer_headers), 403)
    assert_problem(await client.get(USERS), 401)


@pytest.mark.parametrize(
    "params",
    [{"page_size": 1000}, {"page_size": 0}, {"page": 0}, {"page": "x"}, {"q": "x" * 300}],
)
async def test_out_of_range_list_parameters_are_422_problems(
    client: AsyncClient, admin_headers: dict[str, str], params: dict[str, str | int]
) -> None:
    field = next(iter(params))
    assert_problem(await client.get(USERS, headers=admin_headers, params=params), 422, field=field)
