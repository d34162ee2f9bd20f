"""Business counters: each order created, paid, rejected or cancelled counts once, at commit."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from httpx import AsyncClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from meshmart_common.db import Database
from meshmart_common.events import (
    OrderCancelled,
    OrderCreated,
    OrderPaid,
    OrderPaymentTimeout,
    OrderRejected,
    StockRejected,
    StockReserved,
    TradeRejected,
)
from meshmart_common.messaging.consumer import AlreadyHandled
from order_service.events.metrics import OrderMetrics
from services.order.tests.events import SagaDelivery
from services.order.tests.shop import Shop, act, held

ORDERS = "/api/v1/orders"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(api: AsyncClient) -> Samples:
    response = await api.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def business(samples: Samples) -> dict[str, float]:
    """The business series by name (orders_cancelled_total by ``name:reason``)."""
    found: dict[str, float] = {}
    for (name, labels), value in samples.items():
        if (name.startswith("orders_") and name.endswith("_total")) or name == "gmv_cents_total":
            reason = dict(labels).get("reason")
            found[f"{name}:{reason}" if reason else name] = value
    return found


async def test_the_counters_show_exactly_the_orders_that_changed(
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    admin_headers: dict[str, str],
    deliver: SagaDelivery,
) -> None:
    assert set(business(await scrape(api)).values()) == {0}

    # Two paid orders (2500 and 1000 cents); paying again changes nothing.
    first = await shop.order(customer_headers, (1500, 2), coupon_code="FLAT500")
    second = await shop.order(customer_headers, (1000, 1))
    for order in (first, second):
        await held(deliver, order)
        assert (await act(api, "pay", order, customer_headers)).status_code == 200
    assert (await act(api, "pay", first, customer_headers)).status_code == 409
    assert (first["total_cents"], second["total_cents"]) == (2500, 1000)

    # Cancelled by the customer, by an admin, and by the payment timeout.
    by_customer = await shop.order(customer_headers)
    by_admin = await shop.order(customer_headers)
    timed_out = await shop.order(customer_headers)
    for order in (by_customer, by_admin, timed_out):
        await held(deliver, order)
    assert (await act(api, "cancel", by_customer, customer_headers)).status_code == 200
    assert (await act(api, "cancel", by_customer, customer_headers)).status_code == 409
    assert (await act(api, "cancel", by_admin, admin_headers)).status_code == 200
    await deliver(OrderPaymentTimeout(order_id=timed_out["id"]), event_id="timeout-1")
    with pytest.raises(AlreadyHandled):  # the same message, redelivered
        await deliver(OrderPaymentTimeout(order_id=timed_out["id"]), event_id="timeout-1")
    assert await deliver(OrderPaymentTimeout(order_id=by_customer["id"])) == []  # too late

    # Rejected by product; the redelivered and the late replies change nothing.
    rejected = await shop.order(customer_headers)
    refusal = StockRejected(order_id=rejected["id"], reason="out_of_stock", product_ids=[1])
    await deliver(refusal, event_id="refusal-1")
    with pytest.raises(AlreadyHandled):
        await deliver(refusal, event_id="refusal-1")
    assert await deliver(TradeRejected(order_id=rejected["id"], reason="no_points")) == []

    # A checkout retried with its Idempotency-Key is the same order, not a new one.
    retried = await shop.order(customer_headers, key="checkout-1")
    again = await api.post(
        ORDERS, json={}, headers={**customer_headers, "Idempotency-Key": "checkout-1"}
    )
    assert (again.status_code, again.json()["id"]) == (200, retried["id"])

    assert business(await scrape(api)) == {
        "orders_created_total": 7,
        "orders_paid_total": 2,
        "orders_rejected_total": 1,
        "orders_cancelled_total:cancelled_by_customer": 1,
        "orders_cancelled_total:cancelled_by_admin": 1,
        "orders_cancelled_total:payment_timeout": 1,
        "orders_cancelled_total:other": 0,
        "gmv_cents_total": 3500,
    }


async def test_a_failed_checkout_counts_nothing(
    api: AsyncClient, shop: Shop, customer_headers: dict[str, str]
) -> None:
    response = await api.post(ORDERS, json={}, headers=customer_headers)  # empty cart
    assert response.status_code == 409
    await shop.put(customer_headers, shop.product(1000).id, 1)
    unknown_coupon = await api.post(ORDERS, json={"coupon_code": "NOPE"}, headers=customer_headers)
    assert unknown_coupon.status_code == 422
    assert business(await scrape(api))["orders_created_total"] == 0


# --- counting at commit --------------------------------------------------------------


@pytest.fixture
def counters() -> tuple[OrderMetrics, CollectorRegistry]:
    metrics = OrderMetrics()
    registry = CollectorRegistry()
    metrics.export_to(registry)
    return metrics, registry


CREATED = OrderCreated(
    order_id=1,
    user_id=1,
    lines=[],
    subtotal_cents=0,
    discount_cents=0,
    points_to_redeem=0,
    total_cents=0,
    coupon_code=None,
    created_at=datetime(2030, 5, 1, 12, tzinfo=UTC),
)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


async def test_a_change_counts_only_once_its_transaction_commits(
    database: Database, counters: tuple[OrderMetrics, CollectorRegistry]
) -> None:
    metrics, registry = counters
    async with database.session() as session:
        await session.execute(text("SELECT 1"))
        metrics.count_after_commit(session, CREATED)
        assert value(registry, "orders_created_total") == 0
    assert value(registry, "orders_created_total") == 1


async def test_a_rolled_back_change_counts_nothing(
    database: Database, counters: tuple[OrderMetrics, CollectorRegistry]
) -> None:
    metrics, registry = counters

    async def change_then_fail() -> None:
        async with database.session() as session:
            await session.execute(text("SELECT 1"))
            metrics.count_after_commit(session, CREATED)
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError, match="the change failed"):
        await change_then_fail()
    async with database.session() as session:
        await session.execute(text("SELECT 1"))
        metrics.count_after_commit(session, CREATED)
        await session.rollback()
        # The same session, a new transaction that commits: only its change counts.
        await session.execute(text("SELECT 1"))
        metrics.count_after_commit(session, OrderRejected(order_id=1, user_id=1, reason="x"))
    assert value(registry, "orders_created_total") == 0
    assert value(registry, "orders_rejected_total") == 1


async def test_other_events_and_unknown_reasons_stay_bounded(
    database: Database, counters: tuple[OrderMetrics, CollectorRegistry]
) -> None:
    metrics, registry = counters
    async with database.session() as session:
        await session.execute(text("SELECT 1"))
        metrics.count_after_commit(session, StockReserved(order_id=1))
        metrics.count_after_commit(
            session,
            OrderCancelled(
                order_id=1,
                user_id=1,
                reason="a reason nobody planned for",
                cancelled_at=CREATED.created_at,
            ),
        )
        metrics.count_after_commit(
            session,
            OrderPaid(
                order_id=1,
                user_id=1,
                lines=[],
                total_cents=1234,
                discount_cents=0,
                points_redeemed=0,
                coupon_code=None,
                paid_at=CREATED.created_at,
            ),
        )
    assert value(registry, "orders_cancelled_total", reason="other") == 1
    assert value(registry, "orders_paid_total") == 1
    assert value(registry, "gmv_cents_total") == 1234
    reasons = {
        sample.labels["reason"]
        for family in registry.collect()
        for sample in family.samples
        if sample.name == "orders_cancelled_total"
    }
    assert reasons == {"cancelled_by_customer", "cancelled_by_admin", "payment_timeout", "other"}
