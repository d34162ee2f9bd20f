"""/api/v1/users/me/addresses: CRUD, ownership, single default, limits and validation."""

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from httpx import AsyncClient

from meshmart_common.testing import assert_problem

NewAccount = Callable[..., Awaitable[dict[str, Any]]]
ADDRESSES = "/api/v1/users/me/addresses"
HOME = {
    "recipient": "Alice Example",
    "line1": "Main Street 1",
    "city": "Berlin",
    "postal_code": "10115",
    "country": "DE",
}


async def test_create_list_update_and_delete_an_address(
    client: AsyncClient, new_account: NewAccount
) -> None:
    headers = (await new_account("alice@example.com"))["headers"]
    created = await client.post(
        ADDRESSES, headers=headers, json={**HOME, "line2": "Apt 4", "phone": "+49 30 123456"}
    )
    assert created.status_code == 201, created.text
    address = created.json()
    assert address["recipient"] == "Alice Example"
    assert address["line2"] == "Apt 4"
    assert address["phone"] == "+49 30 123456"
    assert address["country"] == "DE"
    assert address["is_default"] is False

    listed = await client.get(ADDRESSES, headers=headers)
    assert [a["id"] for a in listed.json()] == [address["id"]]

    patched = await client.patch(
        f"{ADDRESSES}/{address['id']}", headers=headers, json={"city": "Hamburg", "line2": None}
    )
    assert patched.status_code == 200
    assert patched.json()["city"] == "Hamburg"
    assert patched.json()["line2"] is None
    assert patched.json()["line1"] == "Main Street 1"

    deleted = await client.delete(f"{ADDRESSES}/{address['id']}", headers=headers)
    assert deleted.status_code == 204
    assert (await client.get(ADDRESSES, headers=headers)).json() == []
    assert_problem(await client.delete(f"{ADDRESSES}/{address['id']}", headers=headers), 404)


async def test_only_one_address_is_default(client: AsyncClient, new_account: NewAccount) -> None:
    headers = (await new_account("bob@example.com"))["headers"]
    first = (
        await client.post(ADDRESSES, headers=headers, json={**HOME, "is_default": True})
    ).json()
    second = (
        await client.post(ADDRESSES, headers=headers, json={**HOME, "is_default": True})
    ).json()
    defaults = {
        a["id"]: a["is_default"] for a in (await client.get(ADDRESSES, headers=headers)).json()
    }
    assert defaults == {first["id"]: False, second["id"]: True}

    await client.patch(f"{ADDRESSES}/{first['id']}", headers=headers, json={"is_default": True})
    defaults = {
        a["id"]: a["is_default"] for a in (await client.get(ADDRESSES, headers=headers)).json()
    }
    assert defaults == {first["id"]: True, second["id"]: False}


async def test_another_users_address_is_not_found(
    client: AsyncClient, new_account: NewAccount
) -> None:
    owner = (await new_account("carol@example.com"))["headers"]
    intruder = (await new_account("dave@example.com"))["headers"]
    address = (await client.post(ADDRESSES, headers=owner, json=HOME)).json()
    url = f"{ADDRESSES}/{address['id']}"

    assert (await client.get(ADDRESSES, headers=intruder)).json() == []
    patch = assert_problem(await client.patch(url, headers=intruder, json={"city": "X"}), 404)
    delete = assert_problem(await client.delete(url, headers=intruder), 404)
    missing = assert_problem(await client.delete(f"{ADDRESSES}/999999", headers=intruder), 404)
    assert patch["detail"] == delete["detail"] == missing["detail"] == "No such address."
    # The owner's address is untouched.
    assert (await client.get(ADDRESSES, headers=owner)).json()[0]["city"] == "Berlin"


async def test_addresses_are_limited_per_user(client: AsyncClient, new_account: NewAccount) -> None:
    headers = (await new_account("erin@example.com"))["headers"]
    for _ in range(20):
        assert (await client.post(ADDRESSES, headers=headers, json=HOME)).status_code == 201
    body = assert_problem(await client.post(ADDRESSES, headers=headers, json=HOME), 409)
    assert "at most 20 addresses" in body["detail"]
    assert len((await client.get(ADDRESSES, headers=headers)).json()) == 20


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"recipient": ""}, "recipient"),
        ({"recipient": "   "}, "recipient"),
        ({"line1": "x" * 201}, "line1"),
        ({"city": "x" * 101}, "city"),
        ({"postal_code": "x" * 21}, "postal_code"),
        ({"country": "de"}, "country"),
        ({"country": "DEU"}, "country"),
        ({"phone": "call me"}, "phone"),
        ({"recipient": "tab\there"}, "recipient"),
        ({"is_default": "maybe"}, "is_default"),
    ],
)
async def test_invalid_address_fields_are_422_problems(
    client: AsyncClient, new_account: NewAccount, changes: dict[str, object], field: str
) -> None:
    headers = (await new_account("frank@example.com"))["headers"]
    assert_problem(
        await client.post(ADDRESSES, headers=headers, json={**HOME, **changes}), 422, field=field
    )
    address = (await client.post(ADDRESSES, headers=headers, json=HOME)).json()
    assert_problem(
        await client.patch(f"{ADDRESSES}/{address['id']}", headers=headers, json=changes),
        422,
        field=field,
    )


async def test_required_address_fields_cannot_be_nulled_or_left_out(
    client: AsyncClient, new_account: NewAccount
) -> None:
    headers = (await new_account("gina@example.com"))["headers"]
    without_city = {k: v for k, v in HOME.items() if k != "city"}
    assert_problem(
        await client.post(ADDRESSES, headers=headers, json=without_city), 422, field="city"
    )
    address = (await client.post(ADDRESSES, headers=headers, json=HOME)).json()
    nulled = await client.patch(
        f"{ADDRESSES}/{address['id']}", headers=headers, json={"city": None}
    )
    assert_problem(nulled, 422, field="city")


@pytest.mark.parametrize("address_id", ["abc", "0", "-1", "2147483648", "99999999999999999999"])
async def test_malformed_address_ids_are_422_problems(
    client: AsyncClient, new_account: NewAccount, address_id: str
) -> None:
    headers = (await new_account("hank@example.com"))["headers"]
    assert_problem(await client.delete(f"{ADDRESSES}/{address_id}", headers=headers), 422)
    assert_problem(
        await client.patch(f"{ADDRESSES}/{address_id}", headers=headers, json={"city": "X"}), 422
    )


async def test_addresses_need_a_token(client: AsyncClient) -> None:
    assert_problem(await client.get(ADDRESSES), 401)
    assert_problem(await client.post(ADDRESSES, json=HOME), 401)
