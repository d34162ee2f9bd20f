"""Rate limits: leaky buckets per caller, live limits, 429 with Retry-After, bounded memory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import APIRouter, Depends, FastAPI, Request
from httpx import ASGITransport, AsyncClient
from pydantic import Field

from meshmart_common.app import create_app
from meshmart_common.auth import SigningKey, StaticKeySource, TokenVerifier, jwks_document
from meshmart_common.errors import PROBLEM_JSON
from meshmart_common.ratelimit import (
    RateLimiter,
    authenticated_user,
    client_address,
    rate_limited,
    rate_limiter,
)
from meshmart_common.settings import ServiceSettings
from meshmart_common.testing import TokenMaker


class FakeClock:
    """Monotonic seconds that move only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(clock: FakeClock) -> RateLimiter:
    return RateLimiter(clock=clock)


def passes(limiter: RateLimiter, times: int, per_minute: int, key: str = "ip:10.0.0.1") -> int:
    """How many of ``times`` requests pass at the current instant."""
    return sum(limiter.acquire("login", key, per_minute) == 0 for _ in range(times))


def test_a_burst_up_to_the_limit_passes_and_the_next_request_must_wait(
    limiter: RateLimiter,
) -> None:
    assert passes(limiter, 5, per_minute=5) == 5
    # 5 per minute drains one request every 12 s.
    assert limiter.acquire("login", "ip:10.0.0.1", 5) == pytest.approx(12.0)


def test_a_refused_request_is_not_counted_and_the_wait_then_suffices(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    passes(limiter, 3, per_minute=3)
    for _ in range(10):
        assert limiter.acquire("login", "ip:10.0.0.1", 3) == pytest.approx(20.0)
    clock.advance(20.0)
    assert limiter.acquire("login", "ip:10.0.0.1", 3) == 0
    assert limiter.acquire("login", "ip:10.0.0.1", 3) == pytest.approx(20.0)


def test_the_bucket_drains_over_the_window(limiter: RateLimiter, clock: FakeClock) -> None:
    passes(limiter, 6, per_minute=6)
    clock.advance(30.0)  # half a minute: half the bucket is free again
    assert passes(limiter, 6, per_minute=6) == 3
    clock.advance(60.0)
    assert passes(limiter, 10, per_minute=6) == 6


def test_callers_and_limits_have_buckets_of_their_own(limiter: RateLimiter) -> None:
    passes(limiter, 2, per_minute=2, key="ip:10.0.0.1")
    assert limiter.acquire("login", "ip:10.0.0.1", 2) > 0
    assert limiter.acquire("login", "ip:10.0.0.2", 2) == 0
    assert limiter.acquire("checkout", "ip:10.0.0.1", 2) == 0


def test_a_limit_of_zero_means_no_limit(limiter: RateLimiter) -> None:
    assert passes(limiter, 1000, per_minute=0) == 1000
    assert len(limiter) == 0


def test_a_raised_limit_lets_the_caller_through_at_once(limiter: RateLimiter) -> None:
    passes(limiter, 3, per_minute=3)
    assert limiter.acquire("login", "ip:10.0.0.1", 3) > 0
    assert passes(limiter, 10, per_minute=10) == 7


def test_a_lowered_limit_makes_the_caller_wait_until_the_bucket_drains(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    passes(limiter, 8, per_minute=10)
    # 8 in the bucket, room for 2: one more must wait until 7 drained at 2/min.
    assert limiter.acquire("login", "ip:10.0.0.1", 2) == pytest.approx(7 * 30.0)
    clock.advance(7 * 30.0)
    assert limiter.acquire("login", "ip:10.0.0.1", 2) == 0


def test_memory_is_bounded_by_max_keys_dropping_the_least_recently_used(
    clock: FakeClock,
) -> None:
    limiter = RateLimiter(clock=clock, max_keys=3)
    for n in range(1, 6):
        limiter.acquire("login", f"ip:10.0.0.{n}", 1)
    assert len(limiter) == 3
    # 10.0.0.5 is among the kept buckets: still limited; 10.0.0.1 was dropped: fresh.
    assert limiter.acquire("login", "ip:10.0.0.5", 1) > 0
    assert limiter.acquire("login", "ip:10.0.0.1", 1) == 0


def test_empty_buckets_are_dropped_as_requests_come_in(
    limiter: RateLimiter, clock: FakeClock
) -> None:
    for n in range(4):
        limiter.acquire("login", f"ip:10.0.1.{n}", 60)
    clock.advance(2.0)  # 60 per minute drains one request a second: all empty now
    limiter.acquire("login", "ip:10.0.2.1", 60)
    limiter.acquire("login", "ip:10.0.2.2", 60)
    assert len(limiter) == 2


def test_max_keys_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_keys"):
        RateLimiter(max_keys=0)


# --- the dependency ------------------------------------------------------------


class LimitedSettings(ServiceSettings):
    """Settings of a probe app with two limits."""

    service_name: str = "limited"
    rate_limit_ping_per_minute: int = Field(default=2, ge=0)
    rate_limit_order_per_minute: int = Field(default=1, ge=0)


probe = APIRouter()


@probe.post("/ping", dependencies=[Depends(rate_limited("ping", "rate_limit_ping_per_minute"))])
async def ping() -> dict[str, str]:
    """Limited per client address."""
    return {"pong": "yes"}


@probe.post(
    "/order",
    dependencies=[
        Depends(rate_limited("order", "rate_limit_order_per_minute", key=authenticated_user))
    ],
)
async def order() -> dict[str, str]:
    """Limited per authenticated user."""
    return {"ordered": "yes"}


@pytest.fixture
def limited_app(tmp_path: Path, test_signing_key: SigningKey, clock: FakeClock) -> FastAPI:
    app = create_app(
        LimitedSettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'l.db'}"),
        title="limited",
        description="rate limit probe",
        routers=[probe],
    )
    app.state.token_verifier = TokenVerifier(
        StaticKeySource(jwks_document([test_signing_key])),
        issuer="meshmart-user",
        audience="meshmart",
    )
    app.state.rate_limiter = RateLimiter(clock=clock)
    return app


def client_at(app: FastAPI, address: str) -> AsyncClient:
    return AsyncClient(
        transport=ASGITransport(app=app, client=(address, 40000)), base_url="http://testserver"
    )


@pytest.fixture
async def http(limited_app: FastAPI) -> AsyncIterator[AsyncClient]:
    async with client_at(limited_app, "192.0.2.10") as client:
        yield client


async def test_over_the_limit_answers_429_problem_with_retry_after_in_whole_seconds(
    http: AsyncClient,
) -> None:
    assert [(await http.post("/api/v1/ping")).status_code for _ in range(2)] == [200, 200]
    refused = await http.post("/api/v1/ping")
    assert refused.status_code == 429
    assert refused.headers["content-type"] == PROBLEM_JSON
    assert refused.headers["retry-after"] == "30"  # 2 per minute: one every 30 s
    body = refused.json()
    assert body["type"].endswith("/too-many-requests")
    assert body["detail"] == "Too many ping requests (limit 2 per minute); retry in 30 s."


async def test_retry_after_is_at_least_one_second(limited_app: FastAPI, http: AsyncClient) -> None:
    limited_app.state.settings.rate_limit_ping_per_minute = 6000  # 100 a second
    for _ in range(6000):
        rate_limiter(limited_app).acquire("ping", "ip:192.0.2.10", 6000)
    refused = await http.post("/api/v1/ping")
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"


async def test_the_limit_is_read_from_the_settings_at_each_request(
    limited_app: FastAPI, http: AsyncClient, clock: FakeClock
) -> None:
    await http.post("/api/v1/ping")
    await http.post("/api/v1/ping")
    assert (await http.post("/api/v1/ping")).status_code == 429
    limited_app.state.settings.rate_limit_ping_per_minute = 3
    assert (await http.post("/api/v1/ping")).status_code == 200
    limited_app.state.settings.rate_limit_ping_per_minute = 0
    assert [(await http.post("/api/v1/ping")).status_code for _ in range(20)] == [200] * 20


async def test_the_client_address_is_the_key_and_x_forwarded_for_is_not_trusted(
    limited_app: FastAPI, http: AsyncClient
) -> None:
    for n in range(2):
        forged = {"X-Forwarded-For": f"203.0.113.{n}"}
        assert (await http.post("/api/v1/ping", headers=forged)).status_code == 200
    forged = {"X-Forwarded-For": "203.0.113.99"}
    assert (await http.post("/api/v1/ping", headers=forged)).status_code == 429
    async with client_at(limited_app, "192.0.2.11") as other:
        assert (await other.post("/api/v1/ping")).status_code == 200


async def test_a_per_user_limit_answers_401_before_429_and_counts_each_user(
    http: AsyncClient, make_token: TokenMaker
) -> None:
    alice = {"Authorization": f"Bearer {make_token(7)}"}
    bob = {"Authorization": f"Bearer {make_token(8)}"}
    assert (await http.post("/api/v1/order", headers=alice)).status_code == 200
    assert (await http.post("/api/v1/order", headers=alice)).status_code == 429
    assert (await http.post("/api/v1/order")).status_code == 401
    assert (await http.post("/api/v1/order", headers=bob)).status_code == 200


async def test_the_address_key_names_its_kind() -> None:
    assert await client_address(Request({"type": "http", "client": ("198.51.100.7", 1)})) == (
        "ip:198.51.100.7"
    )
    assert await client_address(Request({"type": "http", "client": None})) == "ip:unknown"


async def test_the_app_limiter_is_created_on_first_use(tmp_path: Path) -> None:
    app = create_app(
        LimitedSettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'l.db'}"),
        title="limited",
        description="rate limit probe",
    )
    assert getattr(app.state, "rate_limiter", None) is None
    first = rate_limiter(app)
    assert rate_limiter(app) is first
