"""The bench report files, the checkout audit and the bare baseline app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from meshmart_devstack.bench.bare_app import create_bare_app
from meshmart_devstack.bench.checkout import (
    AWAITING,
    BENCH_STOCK,
    GRANTED_POINTS,
    audit,
    awaiting_latencies,
)
from meshmart_devstack.bench.report import markdown, targets, write_report


def step(rate: float, p99: float, sustained: bool = True) -> dict[str, Any]:
    return {
        "offered_rate": rate,
        "duration": 30.0,
        "throughput": rate,
        "error_rate": 0.0,
        "sustained": sustained,
        "latency_ms": {"p50": p99 / 4, "p95": p99 / 2, "p99": p99},
        "spectrum_ms": [(0.0, 1.0), (50.0, p99 / 4), (99.0, p99), (100.0, p99 * 2)],
    }


REPORT: dict[str, Any] = {
    "started_at": "2026-11-02T10:00:00+00:00",
    "finished_at": "2026-11-02T10:12:00+00:00",
    "options": {"quick": False, "backend": "local", "read_timeout_s": 1.0},
    "machine": {"cores": 2, "cpu": "Test CPU", "memory_gb": 24, "python": "3.11.7"},
    "generator": {"max_rate": 9000.0},
    "product_detail": {
        "service": {"max_rate": 1600.0, "at_60_percent": step(960, 20.0)},
        "bare": {"max_rate": 2400.0, "at_60_percent": step(1440, 10.0)},
        "ratio": 0.667,
    },
    "search": {
        "service": {"max_rate": 400.0, "at_60_percent": step(240, 40.0)},
        "bare": {"max_rate": 800.0, "at_60_percent": step(480, 20.0)},
        "ratio": 0.5,
    },
    "checkout": {
        "confirmed_rate": 35.0,
        "confirmed": {**step(35, 420.0), "post_latency_ms": {"p50": 30.0, "p99": 90.0}},
        "audit": {"ok": True, "placed": 2100, "problems": []},
    },
    "rss_after_run_mb": {"user": 95.0, "product": 160.0},
    "soak": {
        "growth": {
            "user": {"first": 90.0, "last": 91.0, "change": 1.0, "mb_per_min": 0.1},
            "product": {"first": 150.0, "last": 160.0, "change": 10.0, "mb_per_min": 2.0},
        },
        "rss_samples": [{"t": 0, "user": 90.0, "product": 150.0}],
    },
}


def test_targets_are_judged_against_the_issue() -> None:
    verdicts = {name: ok for name, _wanted, _measured, ok in targets(REPORT)}
    assert verdicts["product detail, one process"] is True
    assert verdicts["product detail p99 at 60%"] is True
    assert verdicts["platform-layer ratio (service / bare)"] is True
    assert verdicts["search, one process"] is False
    assert verdicts["checkouts reaching AWAITING_PAYMENT"] is True
    assert verdicts["no lost or duplicated effect"] is True
    assert verdicts["resident memory per service"] is False
    assert verdicts["no growth over the soak"] is False


def test_markdown_has_the_tables_and_the_machine() -> None:
    text_ = markdown(REPORT)
    assert "2 cores (Test CPU)" in text_
    row = "| product detail | product service | 1,600 | 960 | 5.0 | 10.0 | 20.0 | 0.00% | - | - |"
    assert row in text_
    assert "| search | service / bare | 0.50 |" in text_
    assert "| 35 /s | 30 s | 35.0 /s | 105 | 420 | 90 | 0.00% | 2100 orders" in text_
    assert "| product | 160 | 150 | 160 | 2.00 |" in text_
    assert "9,000 req/s" in text_


def test_an_empty_run_still_renders_with_dashes() -> None:
    text_ = markdown({"machine": {}})
    assert "| product detail, one process | ≥ 1,500 req/s | - | - |" in text_


def test_write_report_writes_json_markdown_and_a_png(tmp_path: Path) -> None:
    paths = write_report(REPORT, tmp_path / "bench")
    assert [p.name for p in paths] == ["report.md", "report.json", "latency.png"]
    assert json.loads((tmp_path / "bench" / "report.json").read_text())["generator"] == {
        "max_rate": 9000.0
    }
    assert (tmp_path / "bench" / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def order(order_id: int, user_id: int, product_id: int, quantity: int, **extra: Any) -> Any:
    return {
        "id": order_id,
        "user_id": user_id,
        "status": AWAITING,
        "lines": [{"product_id": product_id, "quantity": quantity}],
        "points_redeemed": 0,
        "coupon_code": None,
        "updated_at": "2026-11-02T10:00:01.250000+00:00",
        **extra,
    }


def placed(order_id: int, user_id: int) -> dict[str, Any]:
    return {"order_id": order_id, "user_id": user_id}


def stock(reserved: int) -> dict[str, int]:
    return {"on_hand": BENCH_STOCK, "reserved": reserved}


def points(locked: int) -> dict[str, int]:
    return {"balance": GRANTED_POINTS, "locked": locked}


def test_the_audit_passes_when_every_effect_matches_the_orders() -> None:
    orders = {
        1: order(1, 7, 100, 2, points_redeemed=50, coupon_code="WELCOME10"),
        2: order(2, 8, 100, 1),
        3: order(3, 7, 101, 3),
    }
    result = audit(
        [placed(1, 7), placed(2, 8), placed(3, 7)],
        orders,
        {100: stock(3), 101: stock(3)},
        {7: points(50), 8: points(0)},
        {7: 1, 8: 0},
    )
    assert result.ok, result.problems
    assert result.statuses == {AWAITING: 3}


def test_the_audit_finds_double_reservations_lost_orders_and_stray_points() -> None:
    orders = {
        1: order(1, 7, 100, 2),
        2: order(2, 8, 100, 1, status="PENDING"),
        9: order(9, 8, 100, 1),
    }
    result = audit(
        [placed(1, 7), placed(2, 8), placed(3, 8), placed(1, 7)],
        orders,
        {100: stock(4)},
        {7: points(50), 8: points(0)},
        {7: 0, 8: 1},
    )
    assert not result.ok
    problems = "\n".join(result.problems)
    assert "order 1 answered 2 times" in problems
    assert "order 3 was placed but is missing" in problems
    assert "order 9 exists but no checkout created it" in problems
    assert "order 2 is PENDING" in problems
    assert "product 100: reserved 4, orders hold 3" in problems
    assert "user 7: 50 points locked, orders hold 0" in problems
    assert "user 8: 1 coupons locked, orders hold 0" in problems


def test_awaiting_latency_runs_from_the_scheduled_send_to_the_status_change() -> None:
    start = 1_793_613_600.0  # 2026-11-02T10:00:00Z
    orders = {1: order(1, 7, 100, 1), 2: order(2, 7, 100, 1, status="REJECTED")}
    latencies, outcomes = awaiting_latencies(
        start,
        [0.0, 0.5, 1.0, 1.5],
        [placed(1, 7), placed(2, 7), None, placed(5, 7)],
        orders,
    )
    assert latencies[0] == pytest.approx(1.25)
    assert latencies[1:] == [None, None, None]
    assert outcomes == ["ok", "order REJECTED", "not placed", "order lost"]


@pytest.fixture
def catalogue(tmp_path: Path) -> str:
    path = tmp_path / "product.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE categories (id INTEGER PRIMARY KEY, slug, name)"))
        conn.execute(
            text(
                "CREATE TABLE products (id INTEGER PRIMARY KEY, sku, title, description, "
                "price_cents, currency, category_id, image_url, on_hand, reserved, rating_sum, "
                "rating_count, rating_avg_x100, created_at, updated_at, deleted_at)"
            )
        )
        conn.execute(text("INSERT INTO categories VALUES (1, 'home', 'Home'), (2, 'toys', 'Toys')"))
        for pid, title, price, category, deleted in (
            (1, "Desk lamp", 2500, 1, None),
            (2, "Floor lamp 50%", 9900, 1, None),
            (3, "Yo-yo", 500, 2, None),
            (4, "Old lamp", 100, 1, "2026-01-01 00:00:00"),
        ):
            conn.execute(
                text(
                    "INSERT INTO products VALUES (:id, :sku, :title, '', :price, 'USD', :cat, "
                    "NULL, 10, 3, 9, 2, 450, :created, '2026-01-02 00:00:00', :deleted)"
                ),
                {
                    "id": pid,
                    "sku": f"SKU-{pid}",
                    "title": title,
                    "price": price,
                    "cat": category,
                    "created": f"2026-01-0{pid} 00:00:00",
                    "deleted": deleted,
                },
            )
    engine.dispose()
    return f"sqlite+aiosqlite:///{path}"


async def test_the_bare_app_answers_detail_and_search_in_the_services_shape(
    catalogue: str,
) -> None:
    app = create_bare_app(catalogue)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bare") as client:
        detail = (await client.get("/api/v1/products/1")).json()
        assert detail["category"] == {"id": 1, "slug": "home", "name": "Home"}
        assert detail["stock"] == {"on_hand": 10, "reserved": 3, "available": 7}
        assert detail["rating_avg"] == 4.5
        assert detail["created_at"] == "2026-01-01T00:00:00Z"
        assert detail["deleted"] is False
        assert (await client.get("/api/v1/products/99")).status_code == 404

        lamps = (await client.get("/api/v1/products?q=LAMP&sort=price")).json()
        assert [p["id"] for p in lamps["items"]] == [1, 2]
        assert lamps["total"] == 2
        percent = (await client.get("/api/v1/products?q=50%25")).json()
        assert [p["id"] for p in percent["items"]] == [2]
        toys = (await client.get("/api/v1/products?category=toys")).json()
        assert [p["id"] for p in toys["items"]] == [3]
        none = (await client.get("/api/v1/products?category=nope")).json()
        assert none == {"items": [], "total": 0, "page": 1, "page_size": 20}
        page = (await client.get("/api/v1/products?page=2&page_size=2&max_price=10000")).json()
        assert [p["id"] for p in page["items"]] == [1]
        assert page["total"] == 3
