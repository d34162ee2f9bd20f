"""GET/PATCH /api/v1/users/me and PUT /api/v1/users/me/password."""

from collections.abc import Awaitable, Callable
from typing import Any

from httpx import AsyncClient

from meshmart_common.testing import assert_problem

NewAccount = Callable[..., Awaitable[dict[str, Any]]]
TokenMaker = Callable[..., str]
ME = "/api/v1/users/me"
PASSWORD = "/api/v1/users/me/password"


async def test_me_returns_the_callers_account(client: AsyncClient, new_account: NewAccount) -> None:
    account = await new_account("alice@example.com", full_name="Alice")
    response = await client.get(ME, headers=account["headers"])
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == account["id"]
    assert body["email"] == "alice@example.com"
    assert body["full_name"] == "Alice"
    assert body["role"] == "customer"
    assert "password_hash" not in body


async def test_me_with_a_valid_token_of_a_missing_account_is_401(
    client: AsyncClient, customer_headers: dict[str, str]
) -> None:
    body = assert_problem(await client.get(ME, headers=customer_headers), 401)
    assert body["detail"] == "The account of this token no longer exists."


async def test_patch_me_changes_the_name_and_keeps_the_email(
    client: AsyncClient, new_account: NewAccount
) -> None:
    account = await new_account("bob@example.com", full_name="Bob")
    # The email is not a profile field: asking to change it is refused, nothing changes.
    refused = await client.patch(
        ME, headers=account["headers"], json={"full_name": "Robert", "email": "evil@example.com"}
    )
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json()["errors"]] == ["email"]
    assert (await client.get(ME, headers=account["headers"])).json()["full_name"] == "Bob"
    response = await client.patch(ME, headers=account["headers"], json={"full_name": "Robert"})
    assert response.status_code == 200
    assert response.json()["full_name"] == "Robert"
    assert response.json()["email"] == "bob@example.com"
    assert (await client.get(ME, headers=account["headers"])).json()["full_name"] == "Robert"

    unchanged = await client.patch(ME, headers=account["headers"], json={})
    assert unchanged.json()["full_name"] == "Robert"
    cleared = await client.patch(ME, headers=account["headers"], json={"full_name": None})
    assert cleared.json()["full_name"] is None


async def test_patch_me_rejects_an_overlong_or_blank_name(
    client: AsyncClient, new_account: NewAccount
) -> None:
    account = await new_account("carol@example.com")
    for name in ["x" * 101, "  ", 5]:
        response = await client.patch(ME, headers=account["headers"], json={"full_name": name})
        assert_problem(response, 422, field="full_name")


async def test_password_change_replaces_the_password_and_revokes_refresh_tokens(
    client: AsyncClient, new_account: NewAccount
) -> None:
    account = await new_account("dave@example.com", password="old password")
    response = await client.put(
        PASSWORD,
        headers=account["headers"],
        json={"current_password": "old password", "new_password": "new password"},
    )
    assert response.status_code == 204
    old = await client.post(
        "/api/v1/auth/login", json={"email": "dave@example.com", "password": "old password"}
    )
    assert_problem(old, 401)
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": account["refresh_token"]}
    )
    assert_problem(refreshed, 401)
    new = await client.post(
        "/api/v1/auth/login", json={"email": "dave@example.com", "password": "new password"}
    )
    assert new.status_code == 200


async def test_password_change_with_a_wrong_current_password_is_refused(
    client: AsyncClient, new_account: NewAccount
) -> None:
    account = await new_account("erin@example.com", password="the password")
    response = await client.put(
        PASSWORD,
        headers=account["headers"],
        json={"current_password": "not the password", "new_password": "new password"},
    )
    body = assert_problem(response, 422, field="current_password")
    assert body["detail"] == "The current password is wrong."
    # Nothing changed: the old password and the refresh token still work.
    login = await client.post(
        "/api/v1/auth/login", json={"email": "erin@example.com", "password": "the password"}
    )
    assert login.status_code == 200
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": account["refresh_token"]}
    )
    assert refreshed.status_code == 200


async def test_password_change_validates_the_new_password_and_needs_a_token(
    client: AsyncClient, new_account: NewAccount
) -> None:
    account = await new_account("frank@example.com")
    short = await client.put(
        PASSWORD,
        headers=account["headers"],
        json={"current_password": account["password"], "new_password": "short"},
    )
    assert_problem(short, 422, field="new_password")
    anonymous = await client.put(
        PASSWORD, json={"current_password": "whatever1", "new_password": "whatever2"}
    )
    assert_problem(anonymous, 401)
