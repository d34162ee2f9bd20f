"""The running app on a local bus: order events in, saga replies out (all in process).

The ``client`` fixture starts the app's lifespan: the bus (the test's own
file, tmp_path / "bus.db"), the outbox relay and the product-order-events
consumer. The test plays the order service on a second handle of that bus.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import update

from meshmart_common.db import Database, utc_now
from meshmart_common.events import EventData, StockReserved
from meshmart_common.messaging.bus import ReceivedMessage
from meshmart_common.messaging.envelope import CloudEvent, outgoing_message
from meshmart_common.messaging.local_bus import LocalBus
from meshmart_common.messaging.testing import eventually
from meshmart_common.messaging.topology import PRODUCT_EVENTS, consumer_group
from product_service.repository.models import Product, StockReservation
from services.product.tests.support import (
    ORDER_SOURCE,
    order_cancelled,
    order_created,
    order_paid,
    reservations,
)

Factory = Callable[..., Awaitable[dict[str, Any]]]
STOCK_REPLIES = consumer_group("order-stock-replies")  # what the order service reads


@pytest.fixture
async def bus(client: AsyncClient, tmp_path: Path) -> AsyncIterator[LocalBus]:
    """A second handle of the app's bus file, for the order service's side."""
    handle = LocalBus(tmp_path / "bus.db", poll_interval=timedelta(milliseconds=10))
    await handle.start()
    try:
        yield handle
    finally:
        await handle.close()


async def send(bus: LocalBus, payload: EventData) -> CloudEvent:
    envelope = payload.to_event(source=ORDER_SOURCE, subject=payload.aggregate_key())
    await bus.publish(outgoing_message(envelope, payload.topic))
    return envelope


async def next_reply(bus: LocalBus) -> ReceivedMessage:
    """The next saga reply the order service would receive (acked)."""

    async def receive() -> list[ReceivedMessage]:
        return await bus.receive(
            STOCK_REPLIES.name,
            STOCK_REPLIES.topic,
            STOCK_REPLIES.tags,
            max_messages=1,
            wait=timedelta(milliseconds=200),
        )

    messages = await eventually(receive, what="a stock reply on the bus")
    await bus.ack(STOCK_REPLIES.name, messages[0])
    return messages[0]


async def stock_of(client: AsyncClient, product_id: int) -> dict[str, int]:
    response = await client.get(f"/api/v1/products/{product_id}")
    assert response.status_code == 200
    counters: dict[str, int] = response.json()["stock"]
    return counters


async def test_an_order_on_the_bus_is_reserved_and_then_committed(
    client: AsyncClient, bus: LocalBus, create_product: Factory
) -> None:
    product = await create_product(stock=3)

    await send(bus, order_created(9001, (product["id"], 2)))
    reply = await next_reply(bus)

    assert (reply.topic, reply.tag, reply.key) == (PRODUCT_EVENTS, "stock.reserved", "9001")
    envelope = CloudEvent.from_json(reply.body)
    assert StockReserved.from_event(envelope) == StockReserved(order_id=9001)
    assert envelope.source == "/meshmart/product"
    assert await stock_of(client, product["id"]) == {"on_hand": 3, "reserved": 2, "available": 1}

    await send(bus, order_created(9002, (product["id"], 2)))  # only 1 left
    rejected = await next_reply(bus)
    assert (rejected.tag, rejected.key) == ("stock.rejected", "9002")
    assert CloudEvent.from_json(rejected.body).data == {
        "order_id": 9002,
        "reason": "insufficient_stock",
        "product_ids": [product["id"]],
    }

    await send(bus, order_paid(9001, (product["id"], 2)))

    async def committed() -> bool:
        return await stock_of(client, product["id"]) == {
            "on_hand": 1,
            "reserved": 0,
            "available": 1,
        }

    assert await eventually(committed, what="the stock being committed") is True


async def test_an_order_event_that_cannot_be_read_is_parked_as_a_dead_letter(
    client: AsyncClient, bus: LocalBus, admin_headers: dict[str, str]
) -> None:
    broken = CloudEvent(
        source=ORDER_SOURCE, type="order.created", subject="9100", data={"order_id": 9100}
    )
    await bus.publish(outgoing_message(broken, "order-events"))

    async def parked() -> list[dict[str, Any]]:
        response = await client.get("/api/v1/admin/dead-letters", headers=admin_headers)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    items = await eventually(parked, what="the dead letter")

    assert [
        (item["state"], item["consumer_group"], item["event_id"], item["event_type"])
        for item in items
    ] == [("parked", "product-order-events", broken.id, "order.created")]
    assert "lines" in items[0]["error"]


async def test_a_failing_release_is_parked_and_replayed_once_the_stock_is_repaired(
    client: AsyncClient,
    bus: LocalBus,
    admin_headers: dict[str, str],
    create_product: Factory,
    database: Database,
) -> None:
    product = await create_product(stock=5)
    # A reservation the counters do not know about (a broken row): releasing it fails.
    async with database.session() as session:
        session.add(
            StockReservation(
                order_id=9200,
                product_id=product["id"],
                quantity=2,
                state="reserved",
                created_at=utc_now(),
                updated_at=utc_now(),
            )
        )
    await send(bus, order_cancelled(9200))

    async def parked() -> list[dict[str, Any]]:
        response = await client.get("/api/v1/admin/dead-letters", headers=admin_headers)
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    [dead] = await eventually(parked, what="the release being parked")
    assert (dead["event_type"], dead["attempts"]) == ("order.cancelled", 5)
    assert "StockInconsistency" in dead["error"]

    # An operator repairs the counter and replays the event.
    async with database.session() as session:
        await session.execute(update(Product).where(Product.id == product["id"]).values(reserved=2))
    replay = await client.post(
        f"/api/v1/admin/dead-letters/{dead['id']}/replay", headers=admin_headers
    )

    assert replay.status_code == 200, replay.text
    assert replay.json() == {"id": dead["id"], "event_id": dead["event_id"], "outcome": "handled"}
    assert await stock_of(client, product["id"]) == {"on_hand": 5, "reserved": 0, "available": 5}
    assert await reservations(database, 9200) == {product["id"]: (2, "released")}
    assert await parked() == []
