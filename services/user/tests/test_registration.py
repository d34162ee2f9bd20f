"""POST /api/v1/auth/register."""

from datetime import UTC, datetime, timedelta

import pytest
from httpx import AsyncClient

from meshmart_common.testing import assert_problem

REGISTER = "/api/v1/auth/register"


async def test_register_creates_a_customer_with_the_email_normalised(client: AsyncClient) -> None:
    response = await client.post(
        REGISTER,
        json={"email": "Alice@Example.COM", "password": "long enough", "full_name": " Alice "},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["email"] == "alice@example.com"
    assert body["full_name"] == "Alice"
    assert body["role"] == "customer"
    assert isinstance(body["id"], int)
    assert body["id"] >= 1
    created = datetime.fromisoformat(body["created_at"])
    assert created.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=1)
    assert set(body) == {"id", "email", "full_name", "role", "created_at"}


async def test_register_refuses_a_requested_admin_role(client: AsyncClient) -> None:
    body = {"email": "mallory@example.com", "password": "long enough", "role": "admin"}
    refused = await client.post(REGISTER, json=body)
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json()["errors"]] == ["role"]
    del body["role"]
    response = await client.post(REGISTER, json=body)
    assert response.status_code == 201
    assert response.json()["role"] == "customer"
    assert response.json()["full_name"] is None


@pytest.mark.parametrize("second_email", ["dup@example.com", "DUP@Example.com"])
async def test_register_refuses_an_email_that_is_taken_in_any_case(
    client: AsyncClient, second_email: str
) -> None:
    first = await client.post(REGISTER, json={"email": "dup@example.com", "password": "password1"})
    assert first.status_code == 201
    second = await client.post(REGISTER, json={"email": second_email, "password": "password2"})
    body = assert_problem(second, 409)
    assert body["detail"] == "An account with this email already exists."
    assert body["type"].endswith("/conflict")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"email": "not-an-email", "password": "long enough"}, "email"),
        ({"email": "a@example.com", "password": "short"}, "password"),
        ({"email": "a@example.com", "password": "x" * 129}, "password"),
        ({"email": "a@example.com", "password": "long enough", "full_name": ""}, "full_name"),
        ({"email": "a@example.com", "password": "long enough", "full_name": "   "}, "full_name"),
        (
            {"email": "a@example.com", "password": "long enough", "full_name": "x" * 101},
            "full_name",
        ),
        ({"email": "a@example.com", "password": "long enough", "full_name": "a\nb"}, "full_name"),
        ({"email": "x" * 10_000 + "@example.com", "password": "long enough"}, "email"),
        ({"email": "a@example.com", "password": 12345678}, "password"),
        ({"password": "long enough"}, "email"),
    ],
)
async def test_register_rejects_invalid_fields_with_a_field_error(
    client: AsyncClient, payload: dict[str, object], field: str
) -> None:
    response = await client.post(REGISTER, json=payload)
    assert_problem(response, 422, field=field)


async def test_register_accepts_boundary_lengths(client: AsyncClient) -> None:
    response = await client.post(
        REGISTER,
        json={"email": "edge@example.com", "password": "p" * 128, "full_name": "n" * 100},
    )
    assert response.status_code == 201
    assert response.json()["full_name"] == "n" * 100
    login = await client.post(
        "/api/v1/auth/login", json={"email": "edge@example.com", "password": "p" * 128}
    )
    assert login.status_code == 200


async def test_emails_differing_only_in_accents_are_different_accounts(
    client: AsyncClient,
) -> None:
    plain = await client.post(
        REGISTER, json={"email": "jose@example.com", "password": "password-1"}
    )
    accented = await client.post(
        REGISTER, json={"email": "josé@example.com", "password": "password-2"}
    )
    assert plain.status_code == 201
    assert accented.status_code == 201, accented.text
    assert accented.json()["email"] == "josé@example.com"
    login = await client.post(
        "/api/v1/auth/login", json={"email": "jose@example.com", "password": "password-2"}
    )
    assert login.status_code == 401
