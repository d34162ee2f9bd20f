"""Fixtures of the data service tests (the shared ones come from meshmart_common.testing)."""

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

import pytest
from fastapi import FastAPI
from sqlalchemy import MetaData

from data_service.domain.ingest import ingest
from data_service.main import build_app
from data_service.repository.models import Base
from data_service.settings import Settings
from meshmart_common.db import Database
from meshmart_common.events import (
    EventData,
    OrderAwaitingPayment,
    OrderCancelled,
    OrderCompleted,
    OrderCreated,
    OrderLine,
    OrderPaid,
    OrderRejected,
    OrderShipped,
    ProductCreated,
    ProductUpdated,
    UserRegistered,
)
from meshmart_common.testing import TestContext


@pytest.fixture
def service_metadata() -> MetaData:
    """The data service's tables."""
    return Base.metadata


@pytest.fixture
def service_app_factory() -> Callable[[TestContext], FastAPI]:
    """Build the data app on the test database, its local bus in the test's tmp_path."""

    def factory(ctx: TestContext) -> FastAPI:
        return build_app(ctx.settings(Settings, local_bus_path=ctx.tmp_path / "bus.db"))

    return factory


# --- added with the analytics tables -------------------------------------------

MARCH_10 = datetime(2026, 3, 10, tzinfo=UTC)
"""Day one of the sales history fixture (UTC midnight)."""


class IngestEvent(Protocol):
    """``await ingest_event(payload, at=..., event_id=...)``: see the fixture."""

    async def __call__(
        self, data: EventData, *, at: datetime | None = None, event_id: str | None = None
    ) -> bool: ...


@pytest.fixture
def ingest_event(database: Database) -> IngestEvent:
    """Ingest one payload through the real ingest, in a transaction of its own.

    ``at`` is the envelope time (default: now) and ``event_id`` the envelope id
    (default: a fresh UUID). Returns what ingest returns: False for a replay.
    """

    async def run(
        data: EventData, *, at: datetime | None = None, event_id: str | None = None
    ) -> bool:
        async with database.session() as session:
            return await ingest(
                session,
                data.event_type,
                event_id or str(uuid.uuid4()),
                at or datetime.now(UTC),
                data,
            )

    return run


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    return MARCH_10.replace(day=day, hour=hour, minute=minute)


def _line(product_id: int, quantity: int, unit_price_cents: int) -> OrderLine:
    return OrderLine(product_id=product_id, quantity=quantity, unit_price_cents=unit_price_cents)


async def _created(
    ingest_event: IngestEvent,
    order_id: int,
    created_at: datetime,
    lines: list[OrderLine],
    *,
    total_cents: int,
    discount_cents: int = 0,
) -> None:
    await ingest_event(
        OrderCreated(
            order_id=order_id,
            user_id=100 + order_id,
            lines=lines,
            subtotal_cents=total_cents + discount_cents,
            discount_cents=discount_cents,
            points_to_redeem=0,
            total_cents=total_cents,
            created_at=created_at,
        ),
        at=created_at,
    )


async def _paid(
    ingest_event: IngestEvent,
    order_id: int,
    paid_at: datetime,
    lines: list[OrderLine],
    *,
    total_cents: int,
    discount_cents: int = 0,
) -> None:
    await ingest_event(
        OrderPaid(
            order_id=order_id,
            user_id=100 + order_id,
            lines=lines,
            total_cents=total_cents,
            discount_cents=discount_cents,
            points_redeemed=0,
            paid_at=paid_at,
        ),
        at=paid_at,
    )


@pytest.fixture
async def sales_history(ingest_event: IngestEvent) -> None:
    """Two days of events (2026-03-10 and -11, UTC), every order status once.

    - users 1 and 2 register on the 10th, user 3 on the 11th;
    - products 1 "Headphones", 2 "Charger" (renamed "USB-C Charger"), 3 "Cookbook";
      product 9 is sold but never announced (no title);
    - order 1: 10th 09:00, paid 10:15 (26997 after a 1000 discount), shipped;
      lines 1x product 1 @19999, 2x product 2 @3999;
    - order 2: 10th 11:00, paid 11:30 (11997), completed; 3x product 2 @3999;
    - order 3: 10th 12:00, awaiting payment, cancelled 12:30; 5x product 3;
    - order 4: 11th 08:00, rejected 08:01; 9x product 1;
    - order 5: 11th 09:00, paid 09:45 (4699); 1x product 3 @4599, 1x product 9 @100;
    - order 6: 11th 10:00, awaiting payment (1000); 1x product 2.

    So: GMV 43693 over 3 sold orders; top products 2 (5 units), 1 (1 unit,
    19999), 3 (1 unit, 4599), 9 (1 unit, 100).
    """
    for user_id, day in ((1, 10), (2, 10), (3, 11)):
        await ingest_event(
            UserRegistered(
                user_id=user_id, email=f"u{user_id}@example.com", registered_at=_at(day, 8)
            ),
            at=_at(day, 8),
        )
    for product_id, title in ((1, "Headphones"), (2, "Charger"), (3, "Cookbook")):
        await ingest_event(
            ProductCreated(
                product_id=product_id,
                sku=f"SKU-{product_id}",
                title=title,
                price_cents=1000,
                category_id=1,
            ),
            at=_at(1, 0),
        )
    await ingest_event(
        ProductUpdated(
            product_id=2, sku="SKU-2", title="USB-C Charger", price_cents=3999, category_id=1
        ),
        at=_at(2, 0),
    )

    order_1 = [_line(1, 1, 19999), _line(2, 2, 3999)]
    await _created(ingest_event, 1, _at(10, 9), order_1, total_cents=26997, discount_cents=1000)
    await _paid(ingest_event, 1, _at(10, 10, 15), order_1, total_cents=26997, discount_cents=1000)
    await ingest_event(OrderShipped(order_id=1, user_id=101), at=_at(10, 16))

    order_2 = [_line(2, 3, 3999)]
    await _created(ingest_event, 2, _at(10, 11), order_2, total_cents=11997)
    await _paid(ingest_event, 2, _at(10, 11, 30), order_2, total_cents=11997)
    await ingest_event(OrderCompleted(order_id=2, user_id=102), at=_at(10, 18))

    await _created(ingest_event, 3, _at(10, 12), [_line(3, 5, 4599)], total_cents=22995)
    await ingest_event(
        OrderAwaitingPayment(order_id=3, user_id=103, total_cents=22995, pay_by=_at(10, 12, 15)),
        at=_at(10, 12, 1),
    )
    await ingest_event(
        OrderCancelled(order_id=3, user_id=103, reason="timeout", cancelled_at=_at(10, 12, 30)),
        at=_at(10, 12, 30),
    )

    await _created(ingest_event, 4, _at(11, 8), [_line(1, 9, 19999)], total_cents=179991)
    await ingest_event(
        OrderRejected(order_id=4, user_id=104, reason="out of stock"), at=_at(11, 8, 1)
    )

    order_5 = [_line(3, 1, 4599), _line(9, 1, 100)]
    await _created(ingest_event, 5, _at(11, 9), order_5, total_cents=4699)
    await _paid(ingest_event, 5, _at(11, 9, 45), order_5, total_cents=4699)

    await _created(ingest_event, 6, _at(11, 10), [_line(2, 1, 1000)], total_cents=1000)
    await ingest_event(
        OrderAwaitingPayment(order_id=6, user_id=106, total_cents=1000, pay_by=_at(11, 10, 15)),
        at=_at(11, 10, 1),
    )
