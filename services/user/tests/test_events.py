"""user.registered: written to the outbox with the account, published by the relay."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import select

from meshmart_common.db import Database
from meshmart_common.events import UserRegistered
from meshmart_common.messaging.bus import MessageBus, ReceivedMessage
from meshmart_common.messaging.envelope import CloudEvent
from meshmart_common.messaging.testing import eventually
from meshmart_common.messaging.topology import USER_EVENTS
from user_service.domain.seed import seed_accounts
from user_service.events.publisher import SOURCE
from user_service.repository.models import OutboxEvent, User
from user_service.settings import Settings

REGISTER = "/api/v1/auth/register"


async def outbox_rows(database: Database) -> list[OutboxEvent]:
    async with database.session(read_only=True) as session:
        return list(await session.scalars(select(OutboxEvent).order_by(OutboxEvent.id)))


def envelope_of(row: OutboxEvent) -> CloudEvent:
    return CloudEvent.from_json(row.body)


async def test_register_writes_one_user_registered_event_to_the_outbox(
    client: AsyncClient, app: FastAPI
) -> None:
    response = await client.post(
        REGISTER, json={"email": "Dana@Example.com", "password": "long enough"}
    )
    assert response.status_code == 201, response.text
    user = response.json()

    rows = await outbox_rows(app.state.database)
    assert len(rows) == 1
    row = rows[0]
    assert row.topic == USER_EVENTS
    assert row.event_type == "user.registered"
    assert row.message_key == str(user["id"])
    assert row.deliver_at is None

    event = envelope_of(row)
    assert event.id == row.event_id
    assert event.specversion == "1.0"
    assert event.source == SOURCE == "/meshmart/user"
    assert event.type == "user.registered"
    assert event.subject == str(user["id"])
    assert event.datacontenttype == "application/json"
    payload = UserRegistered.from_event(event)
    assert payload.user_id == user["id"]
    assert payload.email == "dana@example.com"
    registered = datetime.fromisoformat(user["created_at"])
    assert abs(payload.registered_at - registered) < timedelta(seconds=1)


async def test_the_relay_publishes_the_event_to_the_bus(client: AsyncClient, app: FastAPI) -> None:
    response = await client.post(
        REGISTER, json={"email": "erin@example.com", "password": "long enough"}
    )
    assert response.status_code == 201
    database: Database = app.state.database

    async def sent() -> list[OutboxEvent]:
        return [row for row in await outbox_rows(database) if row.sent_at is not None]

    (row,) = await eventually(sent, what="the outbox row is marked sent")
    assert row.message_id

    bus: MessageBus = app.state.bus
    received: list[ReceivedMessage] = []

    async def receive() -> list[ReceivedMessage]:
        received.extend(
            await bus.receive("data-all-user-events", USER_EVENTS, ["*"], max_messages=8)
        )
        return received

    (message,) = await eventually(receive, what="the data group receives user.registered")
    assert message.tag == "user.registered"
    assert message.key == str(response.json()["id"])
    assert CloudEvent.from_json(message.body).id == row.event_id
    await bus.ack("data-all-user-events", message)


async def test_a_refused_registration_writes_no_event(client: AsyncClient, app: FastAPI) -> None:
    first = await client.post(REGISTER, json={"email": "dup@example.com", "password": "password1"})
    assert first.status_code == 201
    taken = await client.post(REGISTER, json={"email": "DUP@example.com", "password": "password2"})
    assert taken.status_code == 409
    invalid = await client.post(REGISTER, json={"email": "x@example.com", "password": "short"})
    assert invalid.status_code == 422
    rows = await outbox_rows(app.state.database)
    assert [envelope_of(row).subject for row in rows] == [str(first.json()["id"])]


async def test_the_seeder_publishes_user_registered_for_the_demo_customers_once(
    settings: Settings,
) -> None:
    database = Database(settings.database_url)
    try:
        await seed_accounts(settings, database)
        await seed_accounts(settings, database)
        rows = await outbox_rows(database)
        async with database.session(read_only=True) as session:
            ids = {
                email: user_id
                for user_id, email in await session.execute(select(User.id, User.email))
            }
    finally:
        await database.dispose()

    payloads = [UserRegistered.from_event(envelope_of(row)) for row in rows]
    # The admin is no customer: no user.registered for it.
    assert sorted(p.email for p in payloads) == [
        "alice@example.com",
        "bob@example.com",
        "carol@example.com",
    ]
    for row, payload in zip(rows, payloads, strict=True):
        assert payload.user_id == ids[payload.email]
        assert row.message_key == str(payload.user_id)
        assert row.sent_at is None  # no relay runs in the seeding process
        assert envelope_of(row).source == SOURCE
