"""Order on the event backbone: saga replies arrive over the bus, its events leave over it.

The app runs its lifespan (relay and consumers) on a LocalBus file in
tmp_path; the test publishes as product and trade would, through its own
LocalBus on the same file, like another process on the machine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import select

from meshmart_common.events import EventData, StockReserved, TradeLocked
from meshmart_common.messaging.bus import ReceivedMessage
from meshmart_common.messaging.envelope import CloudEvent, outgoing_message
from meshmart_common.messaging.local_bus import LocalBus
from meshmart_common.messaging.testing import eventually
from meshmart_common.testing import assert_problem
from order_service.components import Components
from order_service.repository.models import OutboxEvent
from services.order.tests.events import source_of
from services.order.tests.shop import Shop

ORDERS = "/api/v1/orders"
DEAD_LETTERS = "/api/v1/admin/dead-letters"


@pytest.fixture
async def bus(components: Components) -> AsyncIterator[LocalBus]:
    """The app's bus file, opened as another process (product, trade) would."""
    path = components.settings.local_bus_path
    assert isinstance(path, Path)
    other = LocalBus(path)
    await other.start()
    try:
        yield other
    finally:
        await other.close()


async def publish(bus: LocalBus, payload: EventData) -> CloudEvent:
    """Publish ``payload`` as its owning service would."""
    envelope = payload.to_event(source=source_of(payload), subject=payload.aggregate_key())
    await bus.publish(outgoing_message(envelope, payload.topic))
    return envelope


async def test_replies_on_the_bus_move_the_order_and_the_payment_timeout_cancels_it(
    app: FastAPI,
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    components: Components,
    bus: LocalBus,
) -> None:
    components.settings = components.settings.model_copy(update={"payment_timeout_seconds": 2})
    order = await shop.order(customer_headers, (1200, 1))

    async def current() -> dict[str, Any]:
        response = await api.get(f"{ORDERS}/{order['id']}", headers=customer_headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def in_status(status: str) -> dict[str, Any] | None:
        now = await current()
        return now if now["status"] == status else None

    await publish(bus, StockReserved(order_id=order["id"]))
    await publish(
        bus,
        TradeLocked(order_id=order["id"], coupon_code=None, discount_cents=0, points_locked=0),
    )

    awaiting = await eventually(lambda: in_status("AWAITING_PAYMENT"), what="AWAITING_PAYMENT")
    assert awaiting is not None
    assert awaiting["pay_by"] is not None
    cancelled = await eventually(lambda: in_status("CANCELLED"), what="the payment timeout")
    assert cancelled is not None
    assert cancelled["cancellation_reason"] == "payment_timeout"

    # What order published went out over the bus: product's group gets the saga events.
    seen: list[ReceivedMessage] = []

    async def product_saw_the_cancel() -> bool:
        messages = await bus.receive(
            "product-order-events", "order-events", ("order.created", "order.cancelled")
        )
        for message in messages:
            await bus.ack("product-order-events", message)
        seen.extend(messages)
        return "order.cancelled" in [m.tag for m in seen]

    await eventually(product_saw_the_cancel, what="order.cancelled on the bus")
    assert [(m.tag, m.key) for m in seen] == [
        ("order.created", str(order["id"])),
        ("order.cancelled", str(order["id"])),
    ]
    envelope = CloudEvent.from_json(seen[-1].body)
    assert (envelope.source, envelope.data["reason"]) == ("/meshmart/order", "payment_timeout")

    async def all_sent() -> bool:
        async with app.state.database.session() as session:
            rows = list(await session.scalars(select(OutboxEvent)))
        return len(rows) == 4 and all(row.sent_at is not None for row in rows)

    # order.created, order.awaiting_payment, order.payment_timeout, order.cancelled
    await eventually(all_sent, what="every outbox row marked sent")


async def test_a_reply_that_cannot_be_handled_is_parked_for_an_admin(
    api: AsyncClient,
    customer_headers: dict[str, str],
    admin_headers: dict[str, str],
    bus: LocalBus,
) -> None:
    broken = CloudEvent(source="/meshmart/product", type="stock.reserved", subject="7", data={})
    await bus.publish(outgoing_message(broken, "product-events"))

    async def parked() -> list[dict[str, Any]]:
        response = await api.get(DEAD_LETTERS, headers=admin_headers)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    [letter] = await eventually(parked, what="the dead letter")
    assert (letter["consumer_group"], letter["event_id"], letter["state"]) == (
        "order-stock-replies",
        broken.id,
        "parked",
    )
    assert_problem(await api.get(DEAD_LETTERS, headers=customer_headers), 403)
    replay = await api.post(f"{DEAD_LETTERS}/{letter['id']}/replay", headers=admin_headers)
    assert_problem(replay, 409)
    discarded = await api.delete(f"{DEAD_LETTERS}/{letter['id']}", headers=admin_headers)
    assert discarded.status_code == 204
    assert await parked() == []
