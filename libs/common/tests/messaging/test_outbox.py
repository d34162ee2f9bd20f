"""The transactional outbox and its relay, on SQLite and MariaDB."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from libs.common.tests.messaging.ticketing import (
    FAST_RELAY,
    TICKET_EVENTS,
    OutboxEvent,
    Ticket,
    TicketOpened,
    count_rows,
)
from meshmart_common.db import Database
from meshmart_common.messaging.bus import BusUnavailable, OutgoingMessage
from meshmart_common.messaging.envelope import REQUEST_ID_PROPERTY, CloudEvent, EventPayload
from meshmart_common.messaging.local_bus import LocalBus
from meshmart_common.messaging.outbox import EventPublisher, OutboxRelay
from meshmart_common.messaging.settings import RelaySettings
from meshmart_common.messaging.testing import FlakyBus, eventually
from meshmart_common.observability import request_id_scope

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def publisher() -> EventPublisher:
    return EventPublisher(OutboxEvent, source="/meshmart/tickets")


async def open_ticket(
    database: Database, publisher: EventPublisher, title: str = "printer on fire"
) -> CloudEvent:
    async with database.session() as session:
        ticket = Ticket(title=title)
        session.add(ticket)
        await session.flush()
        return await publisher.publish(
            session,
            TicketOpened(ticket_id=ticket.id, title=title),
            key=ticket.id,
            properties={"traceparent": TRACEPARENT},
        )


async def outbox_rows(database: Database) -> list[OutboxEvent]:
    async with database.session() as session:
        return list(await session.scalars(select(OutboxEvent).order_by(OutboxEvent.id)))


async def test_an_event_is_written_with_the_change_in_one_transaction(
    database: Database, publisher: EventPublisher
) -> None:
    event = await open_ticket(database, publisher, "printer on fire")

    [row] = await outbox_rows(database)
    ticket_id = int(str(event.subject))
    assert row.event_id == event.id
    assert (row.topic, row.event_type) == (TICKET_EVENTS, "ticket.opened")
    assert row.message_key == str(ticket_id)
    assert row.properties == {"traceparent": TRACEPARENT}
    assert row.sent_at is None
    assert row.claimed_by is None
    assert row.created_at.tzinfo is not None
    envelope = CloudEvent.from_json(row.body)
    assert envelope == event
    assert envelope.source == "/meshmart/tickets"
    assert TicketOpened.from_event(envelope) == TicketOpened(
        ticket_id=ticket_id, title="printer on fire"
    )
    assert publisher.signal.pending  # the commit woke the relay


async def test_a_rolled_back_transaction_leaves_no_event(
    database: Database, publisher: EventPublisher
) -> None:
    async def open_then_fail() -> None:
        async with database.session() as session:
            session.add(Ticket(title="x"))
            await publisher.publish(session, TicketOpened(ticket_id=1, title="x"), key=1)
            raise RuntimeError("changed my mind")

    with pytest.raises(RuntimeError, match="changed my mind"):
        await open_then_fail()

    assert await count_rows(database, OutboxEvent) == 0
    assert await count_rows(database, Ticket) == 0
    assert not publisher.signal.pending


async def test_publish_never_commits_by_itself(
    database: Database, publisher: EventPublisher
) -> None:
    async with database.session() as session:
        await publisher.publish(session, TicketOpened(ticket_id=5, title="x"), key=5)
        assert not publisher.signal.pending
        await session.rollback()
    assert await count_rows(database, OutboxEvent) == 0


async def test_publish_refuses_what_the_broker_would_refuse(
    database: Database, publisher: EventPublisher
) -> None:
    class OrderCreated(EventPayload):
        event_type = "order.created"
        order_id: int

    async with database.session() as session:
        with pytest.raises(ValueError, match="NORMAL"):
            await publisher.publish(
                session,
                OrderCreated(order_id=1),
                key=1,
                deliver_at=datetime.now(UTC) + timedelta(minutes=1),
            )
        with pytest.raises(ValueError, match="timezone-aware"):
            await publisher.publish(
                session,
                TicketOpened(ticket_id=1, title="x"),
                key=1,
                deliver_at=datetime(2030, 1, 1),
            )
        with pytest.raises(ValueError, match="aggregate key"):
            await publisher.publish(session, TicketOpened(ticket_id=1, title="x"), key="")


async def test_context_properties_are_added_to_every_event(database: Database) -> None:
    publisher = EventPublisher(
        OutboxEvent,
        source="/meshmart/tickets",
        context_properties=lambda: {"traceparent": "from-context", "tracestate": "a=1"},
    )
    await open_ticket(database, publisher)  # passes its own traceparent, which wins

    [row] = await outbox_rows(database)
    assert row.properties == {"traceparent": TRACEPARENT, "tracestate": "a=1"}


async def test_the_relay_publishes_committed_rows_in_id_order_and_marks_them_sent(
    database: Database, publisher: EventPublisher, local_bus: LocalBus
) -> None:
    bus = FlakyBus(local_bus)
    events = [await open_ticket(database, publisher, f"ticket {n}") for n in range(5)]
    relay = OutboxRelay(database, bus, OutboxEvent, settings=FAST_RELAY)

    assert await relay.publish_pending() == 5
    assert await relay.publish_pending() == 0  # nothing twice

    assert [CloudEvent.from_json(m.body).id for m in bus.published] == [e.id for e in events]
    first = bus.published[0]
    assert (first.topic, first.tag, first.key) == (
        TICKET_EVENTS,
        "ticket.opened",
        events[0].subject,
    )
    assert first.properties == {"traceparent": TRACEPARENT}
    rows = await outbox_rows(database)
    assert all(row.sent_at is not None and row.message_id for row in rows)
    assert all(row.claimed_by is None and row.claimed_until is None for row in rows)
    received = await local_bus.receive(
        "reader", TICKET_EVENTS, ["*"], max_messages=10, wait=timedelta(seconds=5)
    )
    assert sorted(m.message_id for m in received) == sorted(str(r.message_id) for r in rows)


class FailingOnCall(FlakyBus):
    """Fails exactly the ``n``-th publish."""

    def __init__(self, inner: LocalBus, n: int) -> None:
        super().__init__(inner)
        self.n = n
        self.calls = 0

    async def publish(self, message: OutgoingMessage) -> str:
        self.calls += 1
        if self.calls == self.n:
            raise BusUnavailable("broker hiccup")
        return await super().publish(message)


async def test_a_failed_publish_keeps_what_was_sent_and_releases_the_rest(
    database: Database, publisher: EventPublisher, local_bus: LocalBus
) -> None:
    for n in range(3):
        await open_ticket(database, publisher, f"ticket {n}")
    relay = OutboxRelay(database, FailingOnCall(local_bus, n=2), OutboxEvent, settings=FAST_RELAY)

    with pytest.raises(BusUnavailable):
        await relay.publish_batch()

    rows = await outbox_rows(database)
    assert [row.sent_at is not None for row in rows] == [True, False, False]
    assert all(row.claimed_by is None for row in rows)
    assert await relay.publish_pending() == 2


async def test_the_relay_retries_while_the_bus_is_down_then_delivers_everything(
    database: Database, publisher: EventPublisher, local_bus: LocalBus
) -> None:
    bus = FlakyBus(local_bus)
    bus.down = True
    relay = OutboxRelay(database, bus, OutboxEvent, settings=FAST_RELAY, signal=publisher.signal)
    relay.start()
    try:
        events = [await open_ticket(database, publisher, f"ticket {n}") for n in range(3)]

        async def failed_a_few_times() -> bool:
            return relay.consecutive_failures >= 3

        await eventually(failed_a_few_times, what="three failed publish rounds")
        stats = await relay.stats()
        assert stats.backlog == 3

        bus.down = False

        async def drained() -> bool:
            return (await relay.stats()).backlog == 0

        await eventually(drained, what="the backlog draining")
    finally:
        await relay.stop()

    assert [CloudEvent.from_json(m.body).id for m in bus.published] == [e.id for e in events]
    assert relay.consecutive_failures == 0
    assert (await relay.stats()).oldest_unsent_age is None


class Hanging(FlakyBus):
    """A broker that never answers a publish."""

    async def publish(self, message: OutgoingMessage) -> str:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_relay_that_dies_mid_batch_is_taken_over_after_its_claim_expires(
    database: Database, publisher: EventPublisher, local_bus: LocalBus
) -> None:
    events = [await open_ticket(database, publisher, f"ticket {n}") for n in range(3)]
    settings = RelaySettings(
        poll_interval=timedelta(milliseconds=20), claim_timeout=timedelta(hours=1)
    )
    doomed = OutboxRelay(database, Hanging(local_bus), OutboxEvent, settings=settings)
    doomed.start()

    async def claimed() -> bool:
        return all(row.claimed_by == doomed.relay_id for row in await outbox_rows(database))

    await eventually(claimed, what="the first relay's claim")
    assert doomed._task is not None
    doomed._task.cancel()  # the process is killed: no clean-up runs
    await asyncio.gather(doomed._task, return_exceptions=True)

    survivor_bus = FlakyBus(local_bus)
    survivor = OutboxRelay(database, survivor_bus, OutboxEvent, settings=settings)
    assert await survivor.publish_pending() == 0  # still claimed by the dead relay

    async with database.session() as session:  # an hour later, the claim has expired
        await session.execute(
            update(OutboxEvent).values(claimed_until=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert await survivor.publish_pending() == 3
    assert [CloudEvent.from_json(m.body).id for m in survivor_bus.published] == [
        e.id for e in events
    ]


async def test_rows_committed_while_no_relay_ran_are_published_at_start(
    database: Database, publisher: EventPublisher, local_bus: LocalBus
) -> None:
    events = [await open_ticket(database, publisher, f"ticket {n}") for n in range(2)]
    bus = FlakyBus(local_bus)
    relay = OutboxRelay(database, bus, OutboxEvent, settings=FAST_RELAY)
    relay.start()
    try:

        async def published() -> int:
            return len(bus.published)

        await eventually(published, what="the publish at start")
    finally:
        await relay.stop()
    assert [CloudEvent.from_json(m.body).id for m in bus.published] == [e.id for e in events]


async def test_two_relays_publish_each_row_once(
    database_url: str, publisher: EventPublisher, local_bus: LocalBus
) -> None:
    # Two replicas: separate engines on one database.
    first_db, second_db = Database(database_url), Database(database_url)
    try:
        events = [await open_ticket(first_db, publisher, f"ticket {n}") for n in range(40)]
        settings = RelaySettings(batch_size=5)
        buses = [FlakyBus(local_bus), FlakyBus(local_bus)]
        relays = [
            OutboxRelay(first_db, buses[0], OutboxEvent, settings=settings),
            OutboxRelay(second_db, buses[1], OutboxEvent, settings=settings),
        ]

        await asyncio.gather(*(relay.publish_pending() for relay in relays))

        published = [CloudEvent.from_json(m.body).id for bus in buses for m in bus.published]
        assert sorted(published) == sorted(e.id for e in events)
        assert (await relays[0].stats()).backlog == 0
    finally:
        await first_db.dispose()
        await second_db.dispose()


async def test_stats_report_the_backlog_and_the_age_of_the_oldest_row(
    database: Database, publisher: EventPublisher, local_bus: LocalBus
) -> None:
    relay = OutboxRelay(database, local_bus, OutboxEvent, settings=FAST_RELAY)
    assert (await relay.stats()).backlog == 0
    assert (await relay.stats()).oldest_unsent_age is None

    old = await open_ticket(database, publisher, "old")
    await open_ticket(database, publisher, "new")
    async with database.session() as session:
        await session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.event_id == old.id)
            .values(created_at=datetime.now(UTC) - timedelta(hours=2))
        )

    stats = await relay.stats()
    assert stats.backlog == 2
    assert stats.oldest_unsent_age is not None
    assert timedelta(hours=2) <= stats.oldest_unsent_age < timedelta(hours=3)


async def test_prune_removes_only_rows_sent_before_the_retention(
    database: Database, publisher: EventPublisher, local_bus: LocalBus
) -> None:
    long_ago, just_now, unsent = [
        await open_ticket(database, publisher, title)
        for title in ("sent long ago", "sent just now", "not sent")
    ]
    now = datetime.now(UTC)
    async with database.session() as session:
        await session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.event_id == long_ago.id)
            .values(sent_at=now - timedelta(days=2), message_id="m1")
        )
        await session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.event_id == just_now.id)
            .values(sent_at=now, message_id="m2")
        )
    relay = OutboxRelay(
        database, local_bus, OutboxEvent, settings=RelaySettings(retention=timedelta(days=1))
    )

    assert await relay.prune() == 1
    assert [row.event_id for row in await outbox_rows(database)] == [just_now.id, unsent.id]


async def test_the_current_request_id_travels_with_the_event(database: Database) -> None:
    publisher = EventPublisher(OutboxEvent, source="/meshmart/tickets", context_properties=None)
    with request_id_scope("req-42"):
        await open_ticket(database, publisher)
    await open_ticket(database, publisher)  # outside any request: no request id

    first, second = await outbox_rows(database)
    assert first.properties[REQUEST_ID_PROPERTY] == "req-42"
    assert REQUEST_ID_PROPERTY not in second.properties
