"""The MessageBus contract: every backend (local SQLite bus, RocketMQ 5) passes the same tests.

Timings are short (invisible durations of about a second) and every wait is a
polling loop with a generous deadline; no test asserts how fast anything is.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from meshmart_common.messaging.bus import MessageBus, OutgoingMessage, ReceivedMessage
from meshmart_common.messaging.topology import TopicKind
from tests.messaging.backends import ContractBackend

DEADLINE = 20.0  # seconds; bounds a broken test only
LONG = timedelta(seconds=60)  # an invisible duration that does not expire during a test


def outgoing(
    topic: str,
    *,
    tag: str = "thing.happened",
    key: str = "k-1",
    body: bytes = b'{"n": 1}',
    properties: dict[str, str] | None = None,
    deliver_at: datetime | None = None,
) -> OutgoingMessage:
    return OutgoingMessage(
        topic=topic,
        tag=tag,
        key=key,
        body=body,
        properties=properties or {},
        deliver_at=deliver_at,
    )


async def collect(
    bus: MessageBus,
    group: str,
    topic: str,
    tags: tuple[str, ...],
    *,
    count: int,
    invisible: timedelta = LONG,
) -> list[ReceivedMessage]:
    """Receive until ``count`` messages arrived (fail after DEADLINE)."""
    received: list[ReceivedMessage] = []
    deadline = time.monotonic() + DEADLINE
    while len(received) < count:
        assert time.monotonic() < deadline, f"got {len(received)} of {count} messages"
        received.extend(
            await bus.receive(
                group,
                topic,
                tags,
                max_messages=min(16, count - len(received)),
                invisible_duration=invisible,
                wait=timedelta(milliseconds=500),
            )
        )
    return received


async def quiet_for(
    bus: MessageBus, group: str, topic: str, tags: tuple[str, ...], seconds: float
) -> list[ReceivedMessage]:
    """Everything the group receives during ``seconds`` (expected: nothing)."""
    received: list[ReceivedMessage] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        received.extend(
            await bus.receive(
                group,
                topic,
                tags,
                invisible_duration=LONG,
                wait=timedelta(milliseconds=200),
            )
        )
    return received


async def test_a_published_message_arrives_with_its_fields_and_ack_settles_it(
    contract_backend: ContractBackend, bus: MessageBus
) -> None:
    topic = await contract_backend.new_topic()
    group = await contract_backend.new_group(topic, ("order.created",))
    sent = outgoing(
        topic,
        tag="order.created",
        key="order-42",
        body=b'{"specversion": "1.0", "data": {"caf\xc3\xa9": 1}}',
        properties={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    )

    message_id = await bus.publish(sent)
    [received] = await collect(bus, group, topic, ("order.created",), count=1)

    assert message_id
    assert received.message_id == message_id
    assert (received.topic, received.tag, received.key) == (topic, "order.created", "order-42")
    assert received.body == sent.body
    assert received.properties.get("traceparent") == sent.properties["traceparent"]
    assert received.delivery_attempt == 1

    await bus.ack(group, received)
    wait = contract_backend.short_invisible.total_seconds() + 1
    assert await quiet_for(bus, group, topic, ("order.created",), wait) == []


async def test_a_group_only_gets_the_tags_it_subscribes_to(
    contract_backend: ContractBackend, bus: MessageBus
) -> None:
    topic = await contract_backend.new_topic()
    picky = await contract_backend.new_group(topic, ("order.created", "order.paid"))
    everything = await contract_backend.new_group(topic, ("*",))
    for tag in ("order.created", "order.shipped", "order.paid"):
        await bus.publish(outgoing(topic, tag=tag, key=tag))

    chosen = await collect(bus, picky, topic, ("order.created", "order.paid"), count=2)
    for message in chosen:
        await bus.ack(picky, message)
    all_three = await collect(bus, everything, topic, ("*",), count=3)

    assert sorted(m.tag for m in chosen) == ["order.created", "order.paid"]
    assert sorted(m.tag for m in all_three) == ["order.created", "order.paid", "order.shipped"]
    assert await quiet_for(bus, picky, topic, ("order.created", "order.paid"), 1.0) == []


async def test_two_groups_each_get_every_message_independently(
    contract_backend: ContractBackend, bus: MessageBus
) -> None:
    topic = await contract_backend.new_topic()
    product = await contract_backend.new_group(topic, ("*",))
    trade = await contract_backend.new_group(topic, ("*",))
    ids = {await bus.publish(outgoing(topic, key=f"k-{n}")) for n in range(3)}

    for_product = await collect(bus, product, topic, ("*",), count=3)
    for message in for_product:
        await bus.ack(product, message)
    # Acked by one group, still there for the other.
    for_trade = await collect(bus, trade, topic, ("*",), count=3)

    assert {m.message_id for m in for_product} == ids
    assert {m.message_id for m in for_trade} == ids
    assert all(m.delivery_attempt == 1 for m in for_trade)


async def test_a_delayed_message_is_not_visible_before_its_delivery_time(
    contract_backend: ContractBackend, bus: MessageBus
) -> None:
    topic = await contract_backend.new_topic(TopicKind.DELAY)
    group = await contract_backend.new_group(topic, ("order.payment_timeout",))
    deliver_at = datetime.now(UTC) + timedelta(seconds=2)

    await bus.publish(outgoing(topic, tag="order.payment_timeout", deliver_at=deliver_at))
    early = await bus.receive(
        group,
        topic,
        ("order.payment_timeout",),
        invisible_duration=LONG,
        wait=timedelta(milliseconds=200),
    )
    [due] = await collect(bus, group, topic, ("order.payment_timeout",), count=1)
    arrived = datetime.now(UTC)

    # Received early only if the clock had passed deliver_at by then (a stalled test).
    assert early == [] or datetime.now(UTC) >= deliver_at
    assert arrived >= deliver_at
    assert due.tag == "order.payment_timeout"


async def test_a_delivery_time_in_the_past_means_now(
    contract_backend: ContractBackend, bus: MessageBus
) -> None:
    topic = await contract_backend.new_topic(TopicKind.DELAY)
    group = await contract_backend.new_group(topic, ("order.payment_timeout",))
    past = datetime.now(UTC) - timedelta(minutes=5)

    await bus.publish(outgoing(topic, tag="order.payment_timeout", key="late", deliver_at=past))
    [message] = await collect(bus, group, topic, ("order.payment_timeout",), count=1)

    assert message.key == "late"


async def test_change_invisible_duration_brings_the_message_back_with_the_next_attempt(
    contract_backend: ContractBackend, bus: MessageBus
) -> None:
    topic = await contract_backend.new_topic()
    group = await contract_backend.new_group(topic, ("*",))
    await bus.publish(outgoing(topic, key="retry-me"))

    [first] = await collect(bus, group, topic, ("*",), count=1, invisible=LONG)
    await bus.change_invisible_duration(group, first, contract_backend.short_invisible)
    [second] = await collect(bus, group, topic, ("*",), count=1)

    assert second.message_id == first.message_id
    assert second.key == "retry-me"
    assert (first.delivery_attempt, second.delivery_attempt) == (1, 2)
    await bus.ack(group, second)


async def test_a_message_not_acked_in_time_is_redelivered(
    contract_backend: ContractBackend, bus: MessageBus
) -> None:
    topic = await contract_backend.new_topic()
    group = await contract_backend.new_group(topic, ("*",))
    await bus.publish(outgoing(topic, key="crashed"))

    # The handler "crashes": no ack, no change, the invisible duration runs out.
    [first] = await collect(
        bus, group, topic, ("*",), count=1, invisible=contract_backend.short_invisible
    )
    [second] = await collect(bus, group, topic, ("*",), count=1)

    assert second.message_id == first.message_id
    assert second.delivery_attempt == first.delivery_attempt + 1
    await bus.ack(group, second)
    wait = contract_backend.short_invisible.total_seconds() + 1
    assert await quiet_for(bus, group, topic, ("*",), wait) == []


async def test_receive_hands_out_at_most_max_messages(
    contract_backend: ContractBackend, bus: MessageBus
) -> None:
    topic = await contract_backend.new_topic()
    group = await contract_backend.new_group(topic, ("*",))
    for n in range(5):
        await bus.publish(outgoing(topic, key=f"k-{n}"))

    received: list[ReceivedMessage] = []
    deadline = time.monotonic() + DEADLINE
    while len(received) < 5:
        assert time.monotonic() < deadline
        batch = await bus.receive(
            group, topic, ("*",), max_messages=2, invisible_duration=LONG, wait=timedelta(1)
        )
        assert len(batch) <= 2
        received.extend(batch)

    assert sorted(m.key for m in received) == [f"k-{n}" for n in range(5)]


async def test_messages_published_before_a_group_first_receives_are_delivered(
    contract_backend: ContractBackend, bus: MessageBus
) -> None:
    topic = await contract_backend.new_topic()
    group = await contract_backend.new_group(topic, ("*",))
    ids = {await bus.publish(outgoing(topic, key=f"early-{n}")) for n in range(3)}

    late_consumer = await contract_backend.new_bus()
    received = await collect(late_consumer, group, topic, ("*",), count=3)

    assert {m.message_id for m in received} == ids


async def test_nothing_is_lost_when_a_consumer_restarts(
    contract_backend: ContractBackend,
) -> None:
    topic = await contract_backend.new_topic()
    group = await contract_backend.new_group(topic, ("*",))
    producer = await contract_backend.new_bus()
    ids = [await producer.publish(outgoing(topic, key=f"m-{n}")) for n in range(3)]

    consumer = await contract_backend.new_bus()
    [done] = await collect(consumer, group, topic, ("*",), count=1)
    await consumer.ack(group, done)
    [in_flight] = await collect(
        consumer, group, topic, ("*",), count=1, invisible=contract_backend.short_invisible
    )
    await consumer.close()  # the process dies holding an unacked message
    after_restart_id = await producer.publish(outgoing(topic, key="while-down"))

    restarted = await contract_backend.new_bus()
    rest = await collect(restarted, group, topic, ("*",), count=3)
    for message in rest:
        await restarted.ack(group, message)

    got = {m.message_id for m in rest}
    assert got == (set(ids) - {done.message_id}) | {after_restart_id}
    assert in_flight.message_id in got
    assert next(m for m in rest if m.message_id == in_flight.message_id).delivery_attempt == 2


async def test_consumers_of_one_group_share_the_messages_without_duplicates(
    contract_backend: ContractBackend, bus: MessageBus
) -> None:
    topic = await contract_backend.new_topic()
    group = await contract_backend.new_group(topic, ("*",))
    ids = {await bus.publish(outgoing(topic, key=f"k-{n}")) for n in range(30)}
    consumers = [await contract_backend.new_bus() for _ in range(3)]
    received: list[ReceivedMessage] = []

    async def drain(consumer: MessageBus) -> None:
        deadline = time.monotonic() + DEADLINE
        while len(received) < len(ids) and time.monotonic() < deadline:
            batch = await consumer.receive(
                group,
                topic,
                ("*",),
                max_messages=2,
                invisible_duration=LONG,
                wait=timedelta(milliseconds=200),
            )
            received.extend(batch)
            for message in batch:
                await consumer.ack(group, message)

    await asyncio.gather(*(drain(consumer) for consumer in consumers))

    assert sorted(m.message_id for m in received) == sorted(ids)


async def test_ping_answers_while_the_bus_is_up(bus: MessageBus) -> None:
    await bus.ping()
    assert bus.name
