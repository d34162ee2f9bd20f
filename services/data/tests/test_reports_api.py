"""GET /api/v1/reports/daily as JSON and CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from httpx import AsyncClient

from meshmart_common.events import OrderLine, OrderPaid, ProductCreated
from meshmart_common.testing import assert_problem

IngestEvent = Callable[..., Awaitable[bool]]
DAILY = "/api/v1/reports/daily"


@pytest.mark.usefixtures("sales_history")
async def test_daily_report_json_counts_each_order_on_its_own_days(
    client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    first = await client.get(DAILY, params={"date": "2026-03-10"}, headers=admin_headers)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "application/json"
    assert first.json() == {
        "date": "2026-03-10",
        "orders_created": 3,
        "orders_paid": 2,
        "orders_cancelled": 1,
        "orders_rejected": 0,
        "gmv_cents": 26997 + 11997,
        "new_users": 2,
        "top_products": [
            {"product_id": 2, "title": "USB-C Charger", "units_sold": 5, "revenue_cents": 19995},
            {"product_id": 1, "title": "Headphones", "units_sold": 1, "revenue_cents": 19999},
        ],
    }
    second = await client.get(
        DAILY, params={"date": "2026-03-11", "format": "json"}, headers=admin_headers
    )
    assert second.json() == {
        "date": "2026-03-11",
        "orders_created": 3,
        "orders_paid": 1,
        "orders_cancelled": 0,
        "orders_rejected": 1,
        "gmv_cents": 4699,
        "new_users": 1,
        "top_products": [
            {"product_id": 3, "title": "Cookbook", "units_sold": 1, "revenue_cents": 4599},
            {"product_id": 9, "title": None, "units_sold": 1, "revenue_cents": 100},
        ],
    }


@pytest.mark.usefixtures("sales_history")
async def test_daily_report_csv_is_an_attachment_with_one_row_per_metric(
    client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.get(
        DAILY, params={"date": "2026-03-10", "format": "csv"}, headers=admin_headers
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert (
        response.headers["content-disposition"]
        == 'attachment; filename="meshmart-daily-2026-03-10.csv"'
    )
    assert response.text == (
        "metric,rank,product_id,title,value\r\n"
        "date,,,,2026-03-10\r\n"
        "orders_created,,,,3\r\n"
        "orders_paid,,,,2\r\n"
        "orders_cancelled,,,,1\r\n"
        "orders_rejected,,,,0\r\n"
        "gmv_cents,,,,38994\r\n"
        "new_users,,,,2\r\n"
        "units_sold,1,2,USB-C Charger,5\r\n"
        "revenue_cents,1,2,USB-C Charger,19995\r\n"
        "units_sold,2,1,Headphones,1\r\n"
        "revenue_cents,2,1,Headphones,19999\r\n"
    )


async def test_daily_report_of_a_quiet_day_is_zeros_in_both_formats(
    client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    body = (await client.get(DAILY, params={"date": "2026-01-01"}, headers=admin_headers)).json()
    assert body == {
        "date": "2026-01-01",
        "orders_created": 0,
        "orders_paid": 0,
        "orders_cancelled": 0,
        "orders_rejected": 0,
        "gmv_cents": 0,
        "new_users": 0,
        "top_products": [],
    }
    text = (
        await client.get(
            DAILY, params={"date": "2026-01-01", "format": "csv"}, headers=admin_headers
        )
    ).text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["metric", "rank", "product_id", "title", "value"]
    assert [row[0] for row in rows[1:]] == [
        "date",
        "orders_created",
        "orders_paid",
        "orders_cancelled",
        "orders_rejected",
        "gmv_cents",
        "new_users",
    ]
    assert [row[4] for row in rows[2:]] == ["0"] * 6


async def test_daily_report_defaults_to_today_utc(
    client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    body = (await client.get(DAILY, headers=admin_headers)).json()
    assert body["date"] == datetime.now(UTC).date().isoformat()


async def test_csv_titles_that_look_like_formulas_are_defused_and_quoted(
    client: AsyncClient, admin_headers: dict[str, str], ingest_event: IngestEvent
) -> None:
    paid_at = datetime(2026, 4, 1, 12, tzinfo=UTC)
    await ingest_event(
        ProductCreated(
            product_id=5, sku="X-5", title='=HYPERLINK("x"), "quoted"', price_cents=1, category_id=1
        )
    )
    await ingest_event(
        OrderPaid(
            order_id=1,
            user_id=1,
            lines=[OrderLine(product_id=5, quantity=2, unit_price_cents=250)],
            total_cents=500,
            discount_cents=0,
            points_redeemed=0,
            paid_at=paid_at,
        )
    )
    text = (
        await client.get(
            DAILY, params={"date": "2026-04-01", "format": "csv"}, headers=admin_headers
        )
    ).text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[-2:] == [
        ["units_sold", "1", "5", '\'=HYPERLINK("x"), "quoted"', "2"],
        ["revenue_cents", "1", "5", '\'=HYPERLINK("x"), "quoted"', "500"],
    ]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"date": "2026-13-45"}, "date"),
        ({"date": "2026-02-30"}, "date"),
        ({"date": "20260310"}, "date"),
        ({"date": "2026-03-10T00:00:00"}, "date"),
        ({"date": "yesterday"}, "date"),
        ({"date": "9999-12-31"}, "date"),
        ({"date": "0001-01-01"}, "date"),
        ({"date": "2026-03-10", "format": "xml"}, "format"),
    ],
)
async def test_bad_report_parameters_are_field_problems(
    client: AsyncClient, admin_headers: dict[str, str], params: dict[str, str], field: str
) -> None:
    response = await client.get(DAILY, params=params, headers=admin_headers)
    assert_problem(response, 422, field=field)
