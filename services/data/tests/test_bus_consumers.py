"""In process: events published on the local bus reach the reports through the app's consumers.

The ``client`` fixture runs the app's lifespan, so the four data consumer
groups read the local bus in the test's tmp_path; the test publishes on that
file through a bus of its own, as another service's process would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import func, select

from data_service.repository.models import DeadLetter, InboxEvent, RawEvent
from meshmart_common.db import Database
from meshmart_common.events import EventData, OrderCreated, OrderLine, OrderPaid, UserRegistered
from meshmart_common.messaging.envelope import CloudEvent, outgoing_message
from meshmart_common.messaging.local_bus import LocalBus
from meshmart_common.messaging.testing import eventually

OVERVIEW = "/api/v1/stats/overview"
DEAD_LETTERS = "/api/v1/admin/dead-letters"
AT = datetime(2026, 5, 4, 12, tzinfo=UTC)


@pytest.fixture
async def producer(app: FastAPI, client: AsyncClient) -> AsyncIterator[LocalBus]:
    """A second handle on the app's local bus file (another process's view of it)."""
    bus = LocalBus(app.state.settings.local_bus_path)
    await bus.start()
    try:
        yield bus
    finally:
        await bus.close()


def envelope(data: EventData, *, event_id: str | None = None) -> CloudEvent:
    return data.to_event(
        source="/meshmart/test", subject=data.aggregate_key(), event_id=event_id, time=AT
    )


async def publish(bus: LocalBus, event: CloudEvent, topic: str) -> None:
    await bus.publish(outgoing_message(event, topic))


async def send(bus: LocalBus, data: EventData, *, event_id: str | None = None) -> CloudEvent:
    event = envelope(data, event_id=event_id)
    await publish(bus, event, data.topic)
    return event


def registered(user_id: int) -> UserRegistered:
    return UserRegistered(user_id=user_id, email=f"u{user_id}@example.com", registered_at=AT)


def created(order_id: int, total_cents: int) -> OrderCreated:
    return OrderCreated(
        order_id=order_id,
        user_id=1,
        lines=[OrderLine(product_id=3, quantity=1, unit_price_cents=total_cents)],
        subtotal_cents=total_cents,
        discount_cents=0,
        points_to_redeem=0,
        total_cents=total_cents,
        created_at=AT,
    )


def paid(order_id: int, total_cents: int) -> OrderPaid:
    return OrderPaid(
        order_id=order_id,
        user_id=1,
        lines=[OrderLine(product_id=3, quantity=1, unit_price_cents=total_cents)],
        total_cents=total_cents,
        discount_cents=0,
        points_redeemed=0,
        paid_at=AT,
    )


def overview_probe(client: AsyncClient, headers: dict[str, str], **expected: Any) -> Any:
    """An ``eventually`` probe: the overview once every ``expected`` field matches.

    ``orders_by_status`` may be given in part (only the statuses named are
    compared). The overview reads its numbers one query after another, so a
    probe names every number the test then relies on.
    """

    def matches(body: dict[str, Any]) -> bool:
        for name, value in expected.items():
            if name == "orders_by_status":
                if any(body[name][status] != count for status, count in value.items()):
                    return False
            elif body[name] != value:
                return False
        return True

    async def probe() -> dict[str, Any] | None:
        response = await client.get(OVERVIEW, headers=headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body if matches(body) else None

    return probe


async def scalar_count(database: Database, model: type[Any], *conditions: Any) -> int:
    async with database.session(read_only=True) as session:
        query = select(func.count()).select_from(model).where(*conditions)
        return int(await session.scalar(query) or 0)


async def test_published_events_show_in_the_overview(
    producer: LocalBus, client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    await send(producer, created(10, 5000))
    await send(producer, paid(10, 5000))
    await send(producer, registered(1))

    body = await eventually(
        overview_probe(
            client,
            admin_headers,
            users=1,
            paid_orders=1,
            gmv_cents=5000,
            orders_total=1,
            orders_by_status={"PENDING": 0, "PAID": 1},
        ),
        what="the overview counts the user and the paid order",
    )
    assert body["average_order_value_cents"] == 5000


async def test_an_event_delivered_again_counts_once(
    producer: LocalBus, client: AsyncClient, app: FastAPI, admin_headers: dict[str, str]
) -> None:
    database: Database = app.state.database
    first_user = await send(producer, registered(1))
    await send(producer, created(10, 5000))
    first_paid = await send(producer, paid(10, 5000))

    # Redeliveries: the same envelopes as new messages (a relay that crashed
    # between publishing and marking its row sent publishes again) ...
    await publish(producer, first_user, "user-events")
    await publish(producer, first_paid, "order-events")
    # ... and the same ids with other data: applied twice, they would show.
    await send(producer, registered(2), event_id=first_user.id)
    await send(producer, paid(10, 9999), event_id=first_paid.id)
    # Later events of the same topics: once they are handled, the copies before
    # them (same group, same topic, handled in order) have been handled too.
    last_user = await send(producer, registered(3))
    await send(producer, created(11, 700))
    last_paid = await send(producer, paid(11, 700))

    async def handled() -> bool:
        ids = InboxEvent.event_id.in_([last_user.id, last_paid.id])
        return await scalar_count(database, InboxEvent, ids) == 2

    await eventually(handled, what="the later events are handled")
    body = (await client.get(OVERVIEW, headers=admin_headers)).json()
    assert body["users"] == 2  # users 1 and 3: the copy of user 1's event is not user 2
    assert body["paid_orders"] == 2
    assert body["gmv_cents"] == 5000 + 700
    for event in (first_user, first_paid):
        assert await scalar_count(database, InboxEvent, InboxEvent.event_id == event.id) == 1
        assert await scalar_count(database, RawEvent, RawEvent.event_id == event.id) == 1
    assert await scalar_count(database, DeadLetter) == 0


async def test_unknown_types_are_kept_and_invalid_data_is_parked(
    producer: LocalBus, client: AsyncClient, app: FastAPI, admin_headers: dict[str, str]
) -> None:
    database: Database = app.state.database
    unknown = CloudEvent(
        source="/meshmart/user", type="user.deactivated", subject="1", time=AT, data={"x": 1}
    )
    invalid = CloudEvent(
        source="/meshmart/order", type="order.paid", subject="12", time=AT, data={"order_id": 12}
    )
    await publish(producer, unknown, "user-events")
    await publish(producer, invalid, "order-events")

    async def parked() -> list[dict[str, Any]]:
        response = await client.get(DEAD_LETTERS, headers=admin_headers)
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def kept() -> int:
        return await scalar_count(database, RawEvent, RawEvent.event_id == unknown.id)

    (letter,) = await eventually(parked, what="the invalid order.paid is parked")
    await eventually(kept, what="the unknown type is in the raw log")
    assert letter["event_id"] == invalid.id
    assert letter["consumer_group"] == "data-all-order-events"
    assert letter["state"] == "parked"
    assert letter["attempts"] == 1
    assert "PermanentEventError" in letter["error"]
    assert len(await parked()) == 1  # the unknown type is no dead letter

    replay = await client.post(f"{DEAD_LETTERS}/{letter['id']}/replay", headers=admin_headers)
    assert replay.status_code == 409, replay.text
    discarded = await client.delete(f"{DEAD_LETTERS}/{letter['id']}", headers=admin_headers)
    assert discarded.status_code == 204
    assert await parked() == []
    overview = (await client.get(OVERVIEW, headers=admin_headers)).json()
    assert (overview["users"], overview["orders_total"]) == (0, 0)


async def test_the_dead_letter_routes_are_for_admins(
    client: AsyncClient, customer_headers: dict[str, str]
) -> None:
    assert (await client.get(DEAD_LETTERS)).status_code == 401
    assert (await client.get(DEAD_LETTERS, headers=customer_headers)).status_code == 403
