"""Checkout is rate limited per user; live settings (limit, payment timeout) apply at once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from pydantic import ValidationError

from meshmart_common.events import OrderAwaitingPayment, StockReserved, TradeLocked
from meshmart_common.live_config import COMMON_LIVE_KEYS, LiveConfig
from meshmart_common.ratelimit import RateLimiter
from meshmart_common.testing import assert_problem
from order_service.components import Components
from order_service.settings import Settings
from services.order.tests.events import SagaDelivery
from services.order.tests.shop import Shop
from services.order.tests.stubs import FakeClock

ORDERS = "/api/v1/orders"
LIMIT = 2
ORDER_LIVE_KEYS = (*COMMON_LIVE_KEYS, "payment_timeout_seconds", "rate_limit_checkout_per_minute")
PREFIX = "meshmart/config/order/"
HeadersOf = Callable[..., dict[str, str]]


class LimiterClock:
    """Monotonic seconds for the rate limiter, moved by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def limiter_clock(app: FastAPI) -> LimiterClock:
    """The app's rate limiter on a hand-moved clock, checkout lowered to 2 a minute."""
    clock = LimiterClock()
    app.state.rate_limiter = RateLimiter(clock=clock)
    app.state.settings.rate_limit_checkout_per_minute = LIMIT
    return clock


@pytest.fixture
def live(app: FastAPI) -> LiveConfig:
    """The order service's live keys over the app's settings, fed by hand (no Consul)."""
    return LiveConfig(app.state.settings, ORDER_LIVE_KEYS)


async def checkout(api: AsyncClient, shop: Shop, headers: dict[str, str]) -> Any:
    await shop.put(headers, shop.product(1000).id, 1)
    return await api.post(ORDERS, json={}, headers=headers)


async def order_total(api: AsyncClient, headers: dict[str, str]) -> int:
    response = await api.get(ORDERS, headers=headers)
    assert response.status_code == 200, response.text
    total: int = response.json()["total"]
    return total


async def test_checkouts_over_the_limit_get_429_with_retry_after_and_place_no_order(
    api: AsyncClient, shop: Shop, customer_headers: dict[str, str], limiter_clock: LimiterClock
) -> None:
    assert [(await checkout(api, shop, customer_headers)).status_code for _ in range(2)] == [
        201,
        201,
    ]

    refused = await checkout(api, shop, customer_headers)

    body = assert_problem(refused, 429)
    assert refused.headers["Retry-After"] == "30"  # 2 a minute: one every 30 s
    assert body["detail"] == "Too many checkout requests (limit 2 per minute); retry in 30 s."
    assert await order_total(api, customer_headers) == 2
    cart = (await api.get("/api/v1/cart", headers=customer_headers)).json()
    assert len(cart["items"]) == 1  # the cart is kept for the retry

    limiter_clock.now += 30
    assert (await api.post(ORDERS, json={}, headers=customer_headers)).status_code == 201


async def test_each_user_has_a_limit_of_their_own(
    api: AsyncClient, shop: Shop, headers_of: HeadersOf, limiter_clock: LimiterClock
) -> None:
    ann, bob = headers_of(2001), headers_of(2002)
    for _ in range(LIMIT):
        await checkout(api, shop, ann)
    assert (await checkout(api, shop, ann)).status_code == 429

    assert (await checkout(api, shop, bob)).status_code == 201


async def test_without_a_token_checkout_is_401_not_429(
    api: AsyncClient, shop: Shop, customer_headers: dict[str, str], limiter_clock: LimiterClock
) -> None:
    for _ in range(LIMIT + 1):
        await checkout(api, shop, customer_headers)

    anonymous = await api.post(ORDERS, json={})
    forged = await api.post(ORDERS, json={}, headers={"Authorization": "Bearer nonsense"})

    assert_problem(anonymous, 401)
    assert_problem(forged, 401)


async def test_an_idempotent_retry_is_counted_like_any_checkout(
    api: AsyncClient, shop: Shop, customer_headers: dict[str, str], limiter_clock: LimiterClock
) -> None:
    keyed = {**customer_headers, "Idempotency-Key": "retry-me"}
    await shop.put(customer_headers, shop.product(1000).id, 1)
    assert (await api.post(ORDERS, json={}, headers=keyed)).status_code == 201
    assert (await api.post(ORDERS, json={}, headers=keyed)).status_code == 200
    assert (await api.post(ORDERS, json={}, headers=keyed)).status_code == 429


async def test_a_limit_raised_in_live_config_lets_checkouts_through_at_once(
    app: FastAPI,
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    limiter_clock: LimiterClock,
    live: LiveConfig,
) -> None:
    for _ in range(LIMIT):
        await checkout(api, shop, customer_headers)
    assert (await checkout(api, shop, customer_headers)).status_code == 429

    live.replace(PREFIX, {PREFIX + "rate_limit_checkout_per_minute": b"5"})

    assert app.state.settings.rate_limit_checkout_per_minute == 5
    assert (await api.post(ORDERS, json={}, headers=customer_headers)).status_code == 201


async def test_an_invalid_live_limit_is_refused_and_the_limit_in_force_stays(
    app: FastAPI,
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    limiter_clock: LimiterClock,
    live: LiveConfig,
) -> None:
    live.replace(PREFIX, {PREFIX + "rate_limit_checkout_per_minute": b"-3"})

    assert app.state.settings.rate_limit_checkout_per_minute == LIMIT
    assert [r.kv_key for r in live.rejected()] == [PREFIX + "rate_limit_checkout_per_minute"]
    for _ in range(LIMIT):
        await checkout(api, shop, customer_headers)
    assert (await checkout(api, shop, customer_headers)).status_code == 429


async def test_a_live_payment_timeout_sets_pay_by_of_the_next_order_without_a_restart(
    app: FastAPI,
    components: Components,
    shop: Shop,
    customer_headers: dict[str, str],
    deliver: SagaDelivery,
    clock: FakeClock,
    live: LiveConfig,
) -> None:
    # The components read the very settings object that live config changes.
    assert components.settings is app.state.settings
    order = await shop.order(customer_headers, (1500, 1))

    live.replace(PREFIX, {PREFIX + "payment_timeout_seconds": b"60"})
    live.replace(PREFIX, {PREFIX + "payment_timeout_seconds": b"soon"})  # refused: 60 stays

    assert components.payment_timeout == timedelta(seconds=60)
    await deliver(StockReserved(order_id=order["id"]))
    events = await deliver(
        TradeLocked(order_id=order["id"], coupon_code=None, discount_cents=0, points_locked=0)
    )
    [awaiting] = [e.payload for e in events if isinstance(e.payload, OrderAwaitingPayment)]
    assert awaiting.pay_by == clock.now() + timedelta(seconds=60)

    live.replace(PREFIX, {})  # the override deleted: back to the settings
    assert components.payment_timeout == timedelta(seconds=900)


def test_the_checkout_limit_setting_defaults_to_30_and_refuses_negative_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RATE_LIMIT_CHECKOUT_PER_MINUTE", raising=False)
    assert Settings().rate_limit_checkout_per_minute == 30
    monkeypatch.setenv("RATE_LIMIT_CHECKOUT_PER_MINUTE", "-1")
    with pytest.raises(ValidationError, match="rate_limit_checkout_per_minute"):
        Settings()


async def test_checkout_documents_its_429(api: AsyncClient) -> None:
    schema = (await api.get("/openapi.json")).json()
    responses = schema["paths"][ORDERS]["post"]["responses"]
    assert responses["429"]["description"] == "Too many checkouts by this user; see Retry-After"
