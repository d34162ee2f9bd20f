"""Consumer runners: handle once (inbox), retry with backoff, park dead letters, never stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.tests.messaging.ticketing import (
    FAST_CONSUMER,
    TICKET_EVENTS,
    TICKET_GROUP,
    DeadLetter,
    HandledTicket,
    InboxEvent,
    TicketOpened,
    count_rows,
    handlers,
)
from meshmart_common.db import Database
from meshmart_common.messaging.bus import MessageBus, OutgoingMessage, ReceivedMessage
from meshmart_common.messaging.consumer import (
    ConsumerRunner,
    EventDispatcher,
    EventHandler,
    IncomingEvent,
    Outcome,
    PermanentEventError,
)
from meshmart_common.messaging.envelope import CloudEvent, InvalidEvent, outgoing_message
from meshmart_common.messaging.local_bus import LocalBus
from meshmart_common.messaging.testing import FlakyBus, eventually


@pytest.fixture
async def bus(local_bus: LocalBus) -> FlakyBus:
    return FlakyBus(local_bus)


@pytest.fixture
async def runner(bus: FlakyBus, database: Database) -> AsyncIterator[ConsumerRunner]:
    consumer = ConsumerRunner(
        bus,
        database,
        TICKET_GROUP,
        handlers,
        inbox=InboxEvent,
        dead_letters=DeadLetter,
        settings=FAST_CONSUMER,
    )
    try:
        yield consumer
    finally:
        await consumer.stop()


def ticket_event(ticket_id: int = 7, fail_times: int = 0) -> CloudEvent:
    return TicketOpened(
        ticket_id=ticket_id, title="printer on fire", fail_times=fail_times
    ).to_event(source="/meshmart/tickets", subject=str(ticket_id))


async def send(bus: MessageBus, event: CloudEvent) -> str:
    return await bus.publish(
        outgoing_message(event, TICKET_EVENTS, properties={"traceparent": "00-ab-cd-01"})
    )


async def next_outcomes(runner: ConsumerRunner) -> list[Outcome]:
    return await eventually(runner.receive_and_process, what="a delivery")


async def handled(database: Database) -> list[HandledTicket]:
    async with database.session() as session:
        return list(await session.scalars(select(HandledTicket).order_by(HandledTicket.id)))


async def dead_letters(database: Database) -> list[DeadLetter]:
    async with database.session() as session:
        return list(await session.scalars(select(DeadLetter).order_by(DeadLetter.id)))


async def test_an_event_is_handled_recorded_in_the_inbox_and_acked(
    runner: ConsumerRunner, bus: FlakyBus, database: Database
) -> None:
    event = ticket_event(ticket_id=7)
    message_id = await send(bus, event)

    assert await next_outcomes(runner) == [Outcome.HANDLED]

    [effect] = await handled(database)
    assert (effect.ticket_id, effect.event_id, effect.delivery_attempt) == (7, event.id, 1)
    async with database.session() as session:
        inbox = list(await session.scalars(select(InboxEvent)))
    assert [(i.consumer_group, i.event_id, i.event_type) for i in inbox] == [
        (TICKET_GROUP.name, event.id, "ticket.opened")
    ]
    assert bus.acked == [message_id]


async def test_the_same_event_published_twice_has_one_effect(
    runner: ConsumerRunner, bus: FlakyBus, database: Database
) -> None:
    event = ticket_event()
    await send(bus, event)
    await send(bus, event)  # e.g. the relay died between publish and "mark sent"

    outcomes = await next_outcomes(runner)
    if len(outcomes) == 1:
        outcomes += await next_outcomes(runner)

    assert sorted(outcomes) == sorted([Outcome.HANDLED, Outcome.DUPLICATE])
    assert len(await handled(database)) == 1
    assert len(bus.acked) == 2


class AckLosingBus(FlakyBus):
    """Loses the first ack (the broker went away right after the commit)."""

    def __init__(self, inner: MessageBus) -> None:
        super().__init__(inner)
        self.lost_acks = 0

    async def ack(self, group: str, message: ReceivedMessage) -> None:
        if self.lost_acks == 0:
            self.lost_acks += 1
            raise ConnectionError("ack lost")
        await super().ack(group, message)


async def test_a_redelivered_message_has_no_second_effect(
    local_bus: LocalBus, database: Database
) -> None:
    bus = AckLosingBus(local_bus)
    runner = ConsumerRunner(
        bus,
        database,
        TICKET_GROUP,
        handlers,
        inbox=InboxEvent,
        dead_letters=DeadLetter,
        settings=replace(FAST_CONSUMER, invisible_duration=timedelta(seconds=1)),
    )
    event = ticket_event()
    await send(bus, event)

    assert await next_outcomes(runner) == [Outcome.HANDLED]
    assert await next_outcomes(runner) == [Outcome.DUPLICATE]  # back after the lost ack

    [effect] = await handled(database)
    assert effect.event_id == event.id
    assert bus.lost_acks == 1
    assert len(bus.acked) == 1


async def test_a_failing_handler_is_retried_with_backoff_until_it_succeeds(
    runner: ConsumerRunner, bus: FlakyBus, database: Database
) -> None:
    event = ticket_event(fail_times=2)
    message_id = await send(bus, event)

    assert await next_outcomes(runner) == [Outcome.RETRYING]
    [retrying] = await dead_letters(database)
    assert retrying.parked_at is None
    assert retrying.attempts == 1
    assert "refused on delivery 1" in retrying.error
    assert await handled(database) == []

    assert await next_outcomes(runner) == [Outcome.RETRYING]
    assert await next_outcomes(runner) == [Outcome.HANDLED]

    [effect] = await handled(database)
    assert effect.delivery_attempt == 3
    assert await dead_letters(database) == []  # the success cleared the failure record
    base = FAST_CONSUMER.retry_base
    delays = [delay for mid, delay in bus.invisibility_changes if mid == message_id]
    assert len(delays) == 2
    assert base / 2 <= delays[0] <= base
    assert base <= delays[1] <= base * 2
    assert bus.acked == [message_id]


async def test_an_event_that_keeps_failing_is_parked_after_max_attempts(
    runner: ConsumerRunner, bus: FlakyBus, database: Database
) -> None:
    event = ticket_event(ticket_id=9, fail_times=-1)
    message_id = await send(bus, event)

    outcomes = [(await next_outcomes(runner))[0] for _ in range(FAST_CONSUMER.max_attempts)]

    assert outcomes == [Outcome.RETRYING, Outcome.RETRYING, Outcome.DEAD_LETTERED]
    [letter] = await dead_letters(database)
    assert letter.consumer_group == TICKET_GROUP.name
    assert (letter.topic, letter.message_id, letter.event_id) == (
        TICKET_EVENTS,
        message_id,
        event.id,
    )
    assert (letter.event_type, letter.message_key) == ("ticket.opened", "9")
    assert CloudEvent.from_json(letter.body) == event
    assert letter.properties == {"traceparent": "00-ab-cd-01"}
    assert letter.error.startswith("RuntimeError: ticket 9 refused on delivery 3")
    assert "Traceback" in letter.error
    assert letter.attempts == 3
    assert letter.parked_at is not None
    assert letter.first_failed_at <= letter.last_failed_at <= letter.parked_at
    assert bus.acked == [message_id]  # parked, so the bus is done with it
    assert await handled(database) == []
    assert await count_rows(database, InboxEvent) == 0
    assert await runner.receive_and_process() == []


async def test_an_unparseable_body_is_parked_at_once_and_the_loop_goes_on(
    runner: ConsumerRunner, bus: FlakyBus, database: Database
) -> None:
    garbage = b"\x00 definitely not a CloudEvent"
    garbage_id = await bus.publish(
        OutgoingMessage(topic=TICKET_EVENTS, tag="ticket.opened", key="x", body=garbage)
    )
    good = ticket_event(ticket_id=8)
    await send(bus, good)
    runner.start()

    async def good_one_handled() -> list[HandledTicket]:
        return await handled(database)

    [effect] = await eventually(good_one_handled, what="the good event's effect")
    assert effect.event_id == good.id
    [letter] = await dead_letters(database)
    assert (letter.message_id, letter.event_id, letter.body) == (garbage_id, None, garbage)
    assert letter.attempts == 1
    assert letter.parked_at is not None
    assert letter.error.startswith("InvalidEnvelope: the body is not JSON")
    assert garbage_id in bus.acked


async def refuse_for_good(session: AsyncSession, event: IncomingEvent) -> None:
    raise PermanentEventError(f"{event.type} can never be handled here")


async def expect_other_payload(session: AsyncSession, event: IncomingEvent) -> None:
    class Different(TicketOpened):
        event_type = "ticket.closed"

    event.payload(Different)


@pytest.mark.parametrize(
    ("handler", "error"),
    [(refuse_for_good, "PermanentEventError"), (expect_other_payload, "InvalidEvent")],
    ids=["permanent-error", "payload-mismatch"],
)
async def test_errors_that_retrying_cannot_fix_park_the_event_at_once(
    bus: FlakyBus, database: Database, handler: EventHandler, error: str
) -> None:
    runner = ConsumerRunner(
        bus,
        database,
        TICKET_GROUP,
        handler,
        inbox=InboxEvent,
        dead_letters=DeadLetter,
        settings=FAST_CONSUMER,
    )
    await send(bus, ticket_event())

    assert await next_outcomes(runner) == [Outcome.DEAD_LETTERED]
    [letter] = await dead_letters(database)
    assert letter.attempts == 1
    assert letter.error.startswith(error)


async def test_the_runner_waits_out_an_unavailable_bus(
    runner: ConsumerRunner, bus: FlakyBus, database: Database
) -> None:
    bus.down = True
    runner.start()

    async def failing() -> bool:
        return runner.bus_failures >= 3

    await eventually(failing, what="three failed receives")
    event = ticket_event()
    await send(bus.inner, event)
    bus.down = False

    async def handled_now() -> list[HandledTicket]:
        return await handled(database)

    [effect] = await eventually(handled_now, what="the effect after recovery")
    assert effect.event_id == event.id
    assert runner.bus_failures == 0


async def test_stop_finishes_the_message_in_hand(bus: FlakyBus, database: Database) -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow(session: AsyncSession, event: IncomingEvent) -> None:
        entered.set()
        await release.wait()
        await handlers(session, event)

    runner = ConsumerRunner(
        bus,
        database,
        TICKET_GROUP,
        slow,
        inbox=InboxEvent,
        dead_letters=DeadLetter,
        settings=FAST_CONSUMER,
    )
    message_id = await send(bus, ticket_event())
    runner.start()
    await asyncio.wait_for(entered.wait(), 30)

    stopping = asyncio.create_task(runner.stop())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not stopping.done()  # waits for the handler
    release.set()
    await asyncio.wait_for(stopping, 30)

    assert len(await handled(database)) == 1
    assert bus.acked == [message_id]


async def test_stop_interrupts_an_idle_receive(bus: FlakyBus, database: Database) -> None:
    runner = ConsumerRunner(
        bus,
        database,
        TICKET_GROUP,
        handlers,
        inbox=InboxEvent,
        dead_letters=DeadLetter,
        settings=replace(FAST_CONSUMER, wait=timedelta(minutes=5)),
    )
    runner.start()
    for _ in range(5):
        await asyncio.sleep(0.01)

    await asyncio.wait_for(runner.stop(), 30)  # not after the five-minute long poll


async def test_prune_inbox_drops_old_rows_of_its_own_group(
    runner: ConsumerRunner, database: Database
) -> None:
    now = datetime.now(UTC)
    async with database.session() as session:
        session.add_all(
            [
                InboxEvent(
                    consumer_group=TICKET_GROUP.name,
                    event_id="old",
                    event_type="ticket.opened",
                    handled_at=now - timedelta(days=30),
                ),
                InboxEvent(
                    consumer_group=TICKET_GROUP.name,
                    event_id="recent",
                    event_type="ticket.opened",
                    handled_at=now,
                ),
                InboxEvent(
                    consumer_group="another-group",
                    event_id="old",
                    event_type="ticket.opened",
                    handled_at=now - timedelta(days=30),
                ),
            ]
        )

    assert await runner.prune_inbox() == 1
    async with database.session() as session:
        left = {(i.consumer_group, i.event_id) for i in await session.scalars(select(InboxEvent))}
    assert left == {(TICKET_GROUP.name, "recent"), ("another-group", "old")}


# --- the dispatcher, without a database ------------------------------------------------


def incoming(event: CloudEvent) -> IncomingEvent:
    return IncomingEvent(
        envelope=event, consumer_group="g", topic=TICKET_EVENTS, message_id="m", key="k"
    )


async def test_the_dispatcher_routes_each_type_to_its_typed_handler() -> None:
    seen: list[TicketOpened] = []
    dispatcher = EventDispatcher()

    @dispatcher.on(TicketOpened)
    async def on_opened(session: AsyncSession, ticket: TicketOpened, event: IncomingEvent) -> None:
        seen.append(ticket)

    await dispatcher(AsyncSession(), incoming(ticket_event(ticket_id=3)))

    assert seen == [TicketOpened(ticket_id=3, title="printer on fire")]
    assert dispatcher.event_types == {"ticket.opened"}


async def test_the_dispatcher_refuses_unknown_types_unless_told_to_ignore_them() -> None:
    other = CloudEvent(source="/s", type="ticket.closed", data={})
    with pytest.raises(PermanentEventError, match="no handler"):
        await EventDispatcher()(AsyncSession(), incoming(other))
    await EventDispatcher(ignore_unknown=True)(AsyncSession(), incoming(other))

    dispatcher = EventDispatcher()
    dispatcher.add(TicketOpened, lambda session, payload, event: asyncio.sleep(0))
    with pytest.raises(TypeError, match="already has a handler"):
        dispatcher.add(TicketOpened, lambda session, payload, event: asyncio.sleep(0))


async def test_the_dispatcher_reports_invalid_data_as_an_invalid_event() -> None:
    broken = CloudEvent(source="/s", type="ticket.opened", data={"ticket_id": "seven"})
    with pytest.raises(InvalidEvent):
        await handlers(AsyncSession(), incoming(broken))
