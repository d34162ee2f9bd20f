"""POST /api/v1/auth/login, including the lockout after repeated failures."""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import jwt
import pytest
from httpx import AsyncClient, Response

from meshmart_common.auth import SigningKey
from meshmart_common.testing import assert_problem
from user_service.domain.errors import INVALID_CREDENTIALS
from user_service.domain.login_throttle import LoginThrottle

NewAccount = Callable[..., Awaitable[dict[str, Any]]]
LOGIN = "/api/v1/auth/login"
# The test app keeps the lockout defaults: 5 failures, 30 s doubling, capped at 900 s.


async def login(client: AsyncClient, email: str, password: str) -> Response:
    return await client.post(LOGIN, json={"email": email, "password": password})


async def test_login_returns_a_verifiable_access_token_and_a_refresh_token(
    client: AsyncClient, new_account: NewAccount, test_signing_key: SigningKey
) -> None:
    account = await new_account("alice@example.com")
    response = await login(client, "alice@example.com", account["password"])
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    assert len(body["refresh_token"]) >= 40
    assert response.headers["cache-control"] == "no-store"
    claims = jwt.decode(
        body["access_token"],
        test_signing_key.private_key.public_key(),
        algorithms=["RS256"],
        audience="meshmart",
        issuer="meshmart-user",
    )
    assert claims["sub"] == str(account["id"])
    assert claims["role"] == "customer"
    assert claims["email"] == "alice@example.com"
    assert claims["exp"] - claims["iat"] == 900
    assert jwt.get_unverified_header(body["access_token"])["kid"] == test_signing_key.kid


async def test_login_ignores_the_case_and_surrounding_spaces_of_the_email(
    client: AsyncClient, new_account: NewAccount
) -> None:
    account = await new_account("bob@example.com")
    response = await login(client, "  BOB@Example.com ", account["password"])
    assert response.status_code == 200


async def test_wrong_password_and_unknown_email_get_the_same_401(
    client: AsyncClient, new_account: NewAccount
) -> None:
    await new_account("carol@example.com")
    wrong = assert_problem(await login(client, "carol@example.com", "not her password"), 401)
    unknown_response = await login(client, "nobody@example.com", "whatever1")
    unknown = assert_problem(unknown_response, 401)
    assert wrong["detail"] == unknown["detail"] == INVALID_CREDENTIALS
    assert unknown_response.headers["www-authenticate"] == "Bearer"


async def test_five_failures_lock_the_account_with_retry_after(
    client: AsyncClient, new_account: NewAccount, advance_clock: Callable[[float], None]
) -> None:
    account = await new_account("dave@example.com")
    for _ in range(5):
        assert_problem(await login(client, "dave@example.com", "wrong password"), 401)
    advance_clock(10)
    locked = await login(client, "dave@example.com", account["password"])
    body = assert_problem(locked, 429)
    assert locked.headers["retry-after"] == "20"
    assert "20 seconds" in body["detail"]

    advance_clock(21)
    assert (await login(client, "dave@example.com", account["password"])).status_code == 200


async def test_the_lock_window_doubles_with_each_further_failure(
    client: AsyncClient, new_account: NewAccount, advance_clock: Callable[[float], None]
) -> None:
    await new_account("erin@example.com")
    for _ in range(5):
        await login(client, "erin@example.com", "wrong password")
    assert (await login(client, "erin@example.com", "x")).headers["retry-after"] == "30"
    advance_clock(31)
    assert_problem(await login(client, "erin@example.com", "wrong again"), 401)
    assert (await login(client, "erin@example.com", "x")).headers["retry-after"] == "60"
    advance_clock(61)
    assert_problem(await login(client, "erin@example.com", "wrong again"), 401)
    assert (await login(client, "erin@example.com", "x")).headers["retry-after"] == "120"


async def test_a_successful_login_resets_the_failure_count(
    client: AsyncClient, new_account: NewAccount
) -> None:
    account = await new_account("frank@example.com")
    for _ in range(4):
        await login(client, "frank@example.com", "wrong password")
    assert (await login(client, "frank@example.com", account["password"])).status_code == 200
    for _ in range(4):
        assert_problem(await login(client, "frank@example.com", "wrong password"), 401)
    assert (await login(client, "frank@example.com", account["password"])).status_code == 200


async def test_a_locked_account_does_not_lock_other_accounts(
    client: AsyncClient, new_account: NewAccount
) -> None:
    await new_account("gina@example.com")
    other = await new_account("hank@example.com")
    for _ in range(6):
        await login(client, "gina@example.com", "wrong password")
    assert (await login(client, "hank@example.com", other["password"])).status_code == 200


@pytest.mark.parametrize(
    ("failures", "seconds"),
    [(4, None), (5, 30), (6, 60), (7, 120), (9, 480), (10, 900), (10_000, 900)],
)
def test_lock_window_starts_at_the_threshold_doubles_and_is_capped(
    failures: int, seconds: int | None
) -> None:
    throttle = LoginThrottle(max_failures=5, base_seconds=30, cap_seconds=900)
    window = throttle.lock_window(failures)
    assert window == (None if seconds is None else timedelta(seconds=seconds))


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"email": "a@example.com"},
        {"email": "", "password": "x"},
        {"email": ["a"], "password": 1},
    ],
)
async def test_login_with_a_malformed_body_is_a_422_problem(
    client: AsyncClient, payload: dict[str, object]
) -> None:
    assert_problem(await client.post(LOGIN, json=payload), 422)


async def test_concurrent_first_logins_of_different_users_all_succeed(
    client: AsyncClient, app: Any
) -> None:
    # Many shoppers signing in at once (a sale opening, the bench setting up):
    # on MariaDB, each login's clean-up of its user's expired refresh tokens
    # once took gap locks that deadlocked with the other logins' inserts.
    app.state.settings.rate_limit_login_per_minute = 10_000
    emails = [f"shopper{i}@example.com" for i in range(24)]
    for email in emails:
        registered = await client.post(
            "/api/v1/auth/register", json={"email": email, "password": "s3cret-passw0rd"}
        )
        assert registered.status_code == 201, registered.text
    for _round in range(2):
        answers = await asyncio.gather(
            *(login(client, email, "s3cret-passw0rd") for email in emails)
        )
        assert [answer.status_code for answer in answers] == [200] * len(emails), [
            answer.text for answer in answers if answer.status_code != 200
        ]
