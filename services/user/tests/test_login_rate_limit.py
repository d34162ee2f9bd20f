"""Logins are rate limited per client address (on top of the per-account lockout)."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from pydantic import ValidationError

from meshmart_common.live_config import COMMON_LIVE_KEYS, LiveConfig
from meshmart_common.ratelimit import RateLimiter
from meshmart_common.testing import assert_problem
from services.user.tests.conftest import DEFAULT_PASSWORD
from user_service.settings import Settings

LOGIN = "/api/v1/auth/login"
REGISTER = "/api/v1/auth/register"
EMAIL = "ann@example.com"
LIMIT = 3


class FakeClock:
    """Monotonic seconds that move only when told."""

    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def limiter_clock(app: FastAPI) -> FakeClock:
    """The app's rate limiter on a hand-moved clock, the login limit lowered to 3 a minute."""
    clock = FakeClock()
    app.state.rate_limiter = RateLimiter(clock=clock)
    app.state.settings.rate_limit_login_per_minute = LIMIT
    return clock


@pytest.fixture
async def registered(client: AsyncClient) -> dict[str, str]:
    """Ann's login body (registration itself is not rate limited)."""
    body = {"email": EMAIL, "password": DEFAULT_PASSWORD}
    response = await client.post(REGISTER, json=body)
    assert response.status_code == 201, response.text
    return body


async def statuses(client: AsyncClient, body: dict[str, str], times: int) -> list[int]:
    return [(await client.post(LOGIN, json=body)).status_code for _ in range(times)]


async def test_logins_over_the_limit_from_one_address_get_429_with_retry_after(
    client: AsyncClient, registered: dict[str, str], limiter_clock: FakeClock
) -> None:
    assert await statuses(client, registered, LIMIT) == [200] * LIMIT

    refused = await client.post(LOGIN, json=registered)

    body = assert_problem(refused, 429)
    assert refused.headers["Retry-After"] == "20"  # 3 a minute: one every 20 s
    assert body["detail"] == "Too many login requests (limit 3 per minute); retry in 20 s."
    assert "access_token" not in refused.text


async def test_failed_logins_count_and_the_limit_lifts_once_the_wait_is_over(
    client: AsyncClient, registered: dict[str, str], limiter_clock: FakeClock
) -> None:
    wrong = {**registered, "password": "not-the-password"}
    assert await statuses(client, wrong, LIMIT) == [401] * LIMIT
    # Refused before the password is even checked: the right one does not help now.
    refused = await client.post(LOGIN, json=registered)
    assert_problem(refused, 429)

    limiter_clock.now += int(refused.headers["Retry-After"])

    assert await statuses(client, registered, 2) == [200, 429]


async def test_another_client_address_has_its_own_limit(
    app: FastAPI, client: AsyncClient, registered: dict[str, str], limiter_clock: FakeClock
) -> None:
    await statuses(client, registered, LIMIT)
    transport = ASGITransport(app=app, client=("198.51.100.20", 50000))
    async with AsyncClient(transport=transport, base_url="http://testserver") as elsewhere:
        assert (await elsewhere.post(LOGIN, json=registered)).status_code == 200
    assert (await client.post(LOGIN, json=registered)).status_code == 429


async def test_a_forwarded_for_header_does_not_escape_the_limit(
    client: AsyncClient, registered: dict[str, str], limiter_clock: FakeClock
) -> None:
    for n in range(LIMIT + 1):
        response = await client.post(
            LOGIN, json=registered, headers={"X-Forwarded-For": f"203.0.113.{n}"}
        )
    assert response.status_code == 429


async def test_a_limit_raised_in_live_config_lets_logins_through_at_once(
    app: FastAPI, client: AsyncClient, registered: dict[str, str], limiter_clock: FakeClock
) -> None:
    await statuses(client, registered, LIMIT)
    assert (await client.post(LOGIN, json=registered)).status_code == 429
    live = LiveConfig(app.state.settings, [*COMMON_LIVE_KEYS, "rate_limit_login_per_minute"])

    live.replace(
        "meshmart/config/user/", {"meshmart/config/user/rate_limit_login_per_minute": b"10"}
    )

    assert app.state.settings.rate_limit_login_per_minute == 10
    assert await statuses(client, registered, 8) == [200] * 7 + [429]


async def test_a_limit_of_zero_turns_it_off(
    app: FastAPI, client: AsyncClient, registered: dict[str, str], limiter_clock: FakeClock
) -> None:
    app.state.settings.rate_limit_login_per_minute = 0

    assert await statuses(client, registered, LIMIT * 3) == [200] * LIMIT * 3


async def test_the_default_limit_is_generous_and_the_account_lockout_still_applies(
    client: AsyncClient, registered: dict[str, str]
) -> None:
    wrong = {**registered, "password": "not-the-password"}
    assert await statuses(client, wrong, 5) == [401] * 5

    locked = await client.post(LOGIN, json=registered)

    body = assert_problem(locked, 429)
    assert body["detail"] == "Too many failed logins; try again in 30 seconds."
    assert locked.headers["Retry-After"] == "30"


def test_the_login_limit_setting_defaults_to_60_and_refuses_negative_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RATE_LIMIT_LOGIN_PER_MINUTE", raising=False)
    assert Settings().rate_limit_login_per_minute == 60
    monkeypatch.setenv("RATE_LIMIT_LOGIN_PER_MINUTE", "120")
    assert Settings().rate_limit_login_per_minute == 120
    monkeypatch.setenv("RATE_LIMIT_LOGIN_PER_MINUTE", "-1")
    with pytest.raises(ValidationError, match="rate_limit_login_per_minute"):
        Settings()
