"""GET /api/v1/stats/*: overview, sales series, top products, and their bad inputs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient

from meshmart_common.events import OrderLine, OrderPaid
from meshmart_common.testing import assert_problem

IngestEvent = Callable[..., Awaitable[bool]]
STATS = "/api/v1/stats"


def zero_buckets(start: datetime, count: int, step: timedelta) -> list[dict[str, Any]]:
    return [
        {
            "start": (start + n * step).isoformat().replace("+00:00", "Z"),
            "orders": 0,
            "gmv_cents": 0,
        }
        for n in range(count)
    ]


async def get_json(client: AsyncClient, path: str, headers: dict[str, str], **params: Any) -> Any:
    response = await client.get(path, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.usefixtures("sales_history")
async def test_overview_counts_users_orders_and_gmv(
    client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    body = await get_json(client, f"{STATS}/overview", admin_headers)
    assert body == {
        "users": 3,
        "orders_by_status": {
            "PENDING": 0,
            "AWAITING_PAYMENT": 1,
            "PAID": 1,
            "SHIPPED": 1,
            "COMPLETED": 1,
            "REJECTED": 1,
            "CANCELLED": 1,
        },
        "orders_total": 6,
        "gmv_cents": 26997 + 11997 + 4699,
        "average_order_value_cents": (26997 + 11997 + 4699) // 3,
        "paid_orders": 3,
    }


async def test_overview_of_no_events_is_all_zeros(
    client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    body = await get_json(client, f"{STATS}/overview", admin_headers)
    assert body["users"] == 0
    assert body["orders_total"] == 0
    assert set(body["orders_by_status"].values()) == {0}
    assert (body["gmv_cents"], body["average_order_value_cents"], body["paid_orders"]) == (0, 0, 0)


@pytest.mark.usefixtures("sales_history")
async def test_daily_sales_fill_empty_days_with_zeros(
    client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    body = await get_json(
        client, f"{STATS}/sales", admin_headers, **{"from": "2026-03-09", "to": "2026-03-13"}
    )
    assert body == {
        "granularity": "day",
        "from": "2026-03-09T00:00:00Z",
        "to": "2026-03-13T00:00:00Z",
        "buckets": [
            {"start": "2026-03-09T00:00:00Z", "orders": 0, "gmv_cents": 0},
            {"start": "2026-03-10T00:00:00Z", "orders": 2, "gmv_cents": 26997 + 11997},
            {"start": "2026-03-11T00:00:00Z", "orders": 1, "gmv_cents": 4699},
            {"start": "2026-03-12T00:00:00Z", "orders": 0, "gmv_cents": 0},
        ],
    }


@pytest.mark.usefixtures("sales_history")
async def test_hourly_sales_round_the_range_out_to_whole_hours(
    client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    body = await get_json(
        client,
        f"{STATS}/sales",
        admin_headers,
        granularity="hour",
        **{"from": "2026-03-10T09:30:00Z", "to": "2026-03-10T11:45:00"},
    )
    assert body["granularity"] == "hour"
    assert (body["from"], body["to"]) == ("2026-03-10T09:00:00Z", "2026-03-10T12:00:00Z")
    assert body["buckets"] == [
        {"start": "2026-03-10T09:00:00Z", "orders": 0, "gmv_cents": 0},
        {"start": "2026-03-10T10:00:00Z", "orders": 1, "gmv_cents": 26997},
        {"start": "2026-03-10T11:00:00Z", "orders": 1, "gmv_cents": 11997},
    ]


@pytest.mark.usefixtures("sales_history")
async def test_sales_range_with_an_offset_is_read_as_utc(
    client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    body = await get_json(
        client,
        f"{STATS}/sales",
        admin_headers,
        granularity="hour",
        **{"from": "2026-03-10T12:00:00+02:00", "to": "2026-03-10T05:00:00-06:00"},
    )
    assert body["buckets"] == [
        {"start": "2026-03-10T10:00:00Z", "orders": 1, "gmv_cents": 26997},
    ]


async def test_sales_default_to_the_last_seven_days_by_day(
    client: AsyncClient, admin_headers: dict[str, str], ingest_event: IngestEvent
) -> None:
    now = datetime.now(UTC)
    lines = [OrderLine(product_id=1, quantity=1, unit_price_cents=500)]
    await ingest_event(
        OrderPaid(
            order_id=77,
            user_id=1,
            lines=lines,
            total_cents=500,
            discount_cents=0,
            points_redeemed=0,
            paid_at=now,
        )
    )
    body = await get_json(client, f"{STATS}/sales", admin_headers)
    tomorrow = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    first = tomorrow - timedelta(days=7)
    assert body["granularity"] == "day"
    assert datetime.fromisoformat(body["from"]) == first
    assert datetime.fromisoformat(body["to"]) == tomorrow
    expected = zero_buckets(first, 7, timedelta(days=1))
    expected[-1].update(orders=1, gmv_cents=500)
    assert body["buckets"] == expected


async def test_sales_with_only_a_start_run_to_the_current_hour(
    client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    body = await get_json(
        client,
        f"{STATS}/sales",
        admin_headers,
        granularity="hour",
        **{"from": start.isoformat()},
    )
    assert datetime.fromisoformat(body["from"]) == start
    assert len(body["buckets"]) == 3
    assert datetime.fromisoformat(body["to"]) == start + timedelta(hours=3)


async def test_sales_at_the_bucket_cap_are_served(
    client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    body = await get_json(
        client,
        f"{STATS}/sales",
        admin_headers,
        granularity="hour",
        **{"from": start.isoformat(), "to": (start + timedelta(days=93)).isoformat()},
    )
    assert len(body["buckets"]) == 24 * 93
    assert body["buckets"] == zero_buckets(start, 24 * 93, timedelta(hours=1))


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"granularity": "week"}, "granularity"),
        ({"from": "2026-03-10", "to": "2026-03-09"}, "to"),
        ({"from": "2026-03-10T10:00:00Z", "to": "2026-03-10T10:00:00Z"}, "to"),
        ({"from": "2026-01-01", "to": "2026-04-04T00:00:01Z", "granularity": "hour"}, "to"),
        ({"from": "2010-01-01", "to": "2026-01-01"}, "to"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-02-30"}, "to"),
        ({"from": "0001-01-01"}, "from"),
        ({"to": "9999-12-31T23:59:59"}, "to"),
        ({"from": "1" * 41}, "from"),
        ({"from": "2999-01-01"}, "from"),
    ],
)
async def test_bad_sales_parameters_are_field_problems(
    client: AsyncClient, admin_headers: dict[str, str], params: dict[str, str], field: str
) -> None:
    response = await client.get(f"{STATS}/sales", params=params, headers=admin_headers)
    assert_problem(response, 422, field=field)


@pytest.mark.usefixtures("sales_history")
async def test_top_products_rank_by_units_then_revenue_with_last_known_titles(
    client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    body = await get_json(client, f"{STATS}/top-products", admin_headers)
    assert body == [
        {"product_id": 2, "title": "USB-C Charger", "units_sold": 5, "revenue_cents": 19995},
        {"product_id": 1, "title": "Headphones", "units_sold": 1, "revenue_cents": 19999},
        {"product_id": 3, "title": "Cookbook", "units_sold": 1, "revenue_cents": 4599},
        {"product_id": 9, "title": None, "units_sold": 1, "revenue_cents": 100},
    ]
    top_two = await get_json(client, f"{STATS}/top-products", admin_headers, limit=2)
    assert [p["product_id"] for p in top_two] == [2, 1]


async def test_top_products_of_no_sales_is_empty(
    client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    assert await get_json(client, f"{STATS}/top-products", admin_headers) == []


@pytest.mark.parametrize("limit", ["0", "101", "-1", "ten", "1.5"])
async def test_top_products_limit_must_be_1_to_100(
    client: AsyncClient, admin_headers: dict[str, str], limit: str
) -> None:
    response = await client.get(
        f"{STATS}/top-products", params={"limit": limit}, headers=admin_headers
    )
    assert_problem(response, 422, field="limit")
