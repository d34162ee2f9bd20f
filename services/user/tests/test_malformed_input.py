"""Malformed requests of every kind get a 4xx problem, never a 500."""

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from httpx import AsyncClient

from meshmart_common.testing import assert_problem

NewAccount = Callable[..., Awaitable[dict[str, Any]]]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
    ],
)
@pytest.mark.parametrize(
    "content",
    [b"not json", b"", b"[]", b"null", b'{"email": ', b"\xff\xfe", b'"a string"', b"1e999999"],
)
async def test_non_object_bodies_on_auth_routes_are_422_problems(
    client: AsyncClient, path: str, content: bytes
) -> None:
    response = await client.post(
        path, content=content, headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 422)


async def test_huge_strings_are_422_problems(client: AsyncClient, new_account: NewAccount) -> None:
    huge = "x" * 1_000_000
    register = await client.post(
        "/api/v1/auth/register", json={"email": f"{huge}@example.com", "password": huge}
    )
    assert_problem(register, 422)
    login = await client.post("/api/v1/auth/login", json={"email": huge, "password": huge})
    assert_problem(login, 422)
    headers = (await new_account("alice@example.com"))["headers"]
    address = await client.post(
        "/api/v1/users/me/addresses",
        headers=headers,
        json={"recipient": huge, "line1": huge, "city": huge, "postal_code": huge, "country": huge},
    )
    assert_problem(address, 422, field="recipient")


async def test_wrong_json_types_are_422_problems(
    client: AsyncClient, new_account: NewAccount
) -> None:
    headers = (await new_account("bob@example.com"))["headers"]
    cases: list[tuple[str, str, object]] = [
        ("POST", "/api/v1/auth/register", {"email": 1, "password": ["a"], "full_name": {}}),
        ("PATCH", "/api/v1/users/me", {"full_name": ["x"]}),
        ("PUT", "/api/v1/users/me/password", {"current_password": None, "new_password": 1}),
        ("POST", "/api/v1/users/me/addresses", [1, 2, 3]),
    ]
    for method, path, payload in cases:
        response = await client.request(method, path, headers=headers, json=payload)
        assert_problem(response, 422)


async def test_a_very_long_bearer_token_is_a_401_problem(client: AsyncClient) -> None:
    response = await client.get(
        "/api/v1/users/me", headers={"Authorization": "Bearer " + "a" * 20_000}
    )
    assert assert_problem(response, 401)["detail"] == "The access token is too long."


async def test_unknown_routes_and_methods_are_problems(client: AsyncClient) -> None:
    assert_problem(await client.get("/api/v1/nothing-here"), 404)
    assert_problem(await client.delete("/api/v1/auth/login"), 405)
