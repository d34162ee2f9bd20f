"""RocketMQBus against a real RocketMQ 5 (name server + proxy with embedded broker).

The ``rocketmq_server`` fixture (meshmart_devstack.pytest_rocketmq) starts one
server per session. Each test works on its own topic and groups (created in one
batch for the module) so tests never see each other's messages. Waiting is
done by polling with deadlines; nothing asserts how fast RocketMQ is.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Collection
from datetime import UTC, datetime, timedelta

import pytest

from meshmart_common.messaging.bus import (
    BusUnavailable,
    MessageBus,
    OutgoingMessage,
    ReceivedMessage,
)
from meshmart_common.messaging.rocketmq import CLIENT_LOGGER, RocketMQBus, tag_expression
from meshmart_common.messaging.topology import CONSUMER_GROUPS, TOPICS
from meshmart_devstack.rocketmq import RocketMQServer, TopicSpec, query_route

RUN = uuid.uuid4().hex[:8]
NORMAL_CASES = ("roundtrip", "tags", "groups", "retry", "unacked", "restart", "loop", "reopen")
DELAY_CASES = ("delay", "delay-now")
DEADLINE = 60.0  # seconds any single "wait until it shows up" may take
SHORT = timedelta(seconds=2)
PROBE_TAG = "meshmart.test-probe"  # the devstack proxy accepts invisible durations from 1 s


def topic_of(case: str) -> str:
    return f"t-{case}-{RUN}"


def group_of(case: str, n: int = 1) -> str:
    return f"g-{case}-{n}-{RUN}"


@pytest.fixture(scope="module")
def rocketmq(rocketmq_server: RocketMQServer) -> RocketMQServer:
    """The session's server with this module's topics and groups created (one batch)."""
    rocketmq_server.create(
        [TopicSpec(topic_of(case)) for case in NORMAL_CASES]
        + [TopicSpec(topic_of(case), "DELAY") for case in DELAY_CASES],
        [group_of(case, n) for case in NORMAL_CASES + DELAY_CASES for n in (1, 2)],
    )
    return rocketmq_server


@pytest.fixture
async def bus(rocketmq: RocketMQServer) -> AsyncIterator[RocketMQBus]:
    bus = RocketMQBus(rocketmq.endpoints, ping_topic="user-events")
    await bus.start()
    try:
        yield bus
    finally:
        await bus.close()


def message(
    topic: str,
    tag: str = "thing.happened",
    *,
    key: str = "agg-1",
    body: bytes | None = None,
    properties: dict[str, str] | None = None,
    deliver_at: datetime | None = None,
) -> OutgoingMessage:
    return OutgoingMessage(
        topic=topic,
        tag=tag,
        key=key,
        body=body if body is not None else f'{{"id": "{uuid.uuid4()}"}}'.encode(),
        properties=properties or {},
        deliver_at=deliver_at,
    )


async def receive_until(
    bus: MessageBus,
    group: str,
    topic: str,
    tags: Collection[str] = ("*",),
    *,
    count: int = 1,
    within: float = DEADLINE,
    invisible: timedelta = timedelta(seconds=30),
) -> list[ReceivedMessage]:
    """Receive until ``count`` messages arrived or ``within`` seconds passed."""
    got: list[ReceivedMessage] = []
    deadline = time.monotonic() + within
    while len(got) < count and time.monotonic() < deadline:
        got += await bus.receive(
            group, topic, tags, invisible_duration=invisible, wait=timedelta(seconds=1)
        )
    return got


async def receive_for(
    bus: MessageBus,
    group: str,
    topic: str,
    tags: Collection[str] = ("*",),
    *,
    seconds: float,
    invisible: timedelta = timedelta(seconds=30),
) -> list[ReceivedMessage]:
    """Everything received in ``seconds`` (to show that something does *not* come)."""
    got: list[ReceivedMessage] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got += await bus.receive(
            group, topic, tags, invisible_duration=invisible, wait=timedelta(seconds=1)
        )
    return got


def test_tag_expression() -> None:
    assert tag_expression(["b", "a", "a"]) == "a || b"
    assert tag_expression(["*"]) == "*"
    with pytest.raises(ValueError, match="at least one tag"):
        tag_expression([])
    with pytest.raises(ValueError, match="invalid tag"):
        tag_expression(["a|b"])


def test_client_logs_go_to_the_service_logging() -> None:
    client_log = logging.getLogger(CLIENT_LOGGER)
    assert client_log.propagate
    assert client_log.handlers == []
    assert client_log.level == logging.WARNING


async def test_is_a_message_bus(bus: RocketMQBus) -> None:
    assert isinstance(bus, MessageBus)
    assert bus.name == "rocketmq"
    await bus.ping()


async def test_close_then_start_opens_the_bus_again(bus: RocketMQBus) -> None:
    await bus.close()
    await bus.close()  # twice is fine
    with pytest.raises(BusUnavailable, match="closed"):
        await bus.publish(message(topic_of("reopen")))
    await bus.start()
    await bus.start()  # idempotent
    assert await bus.publish(message(topic_of("reopen")))


async def test_publish_receive_ack_round_trip(bus: RocketMQBus) -> None:
    topic, group = topic_of("roundtrip"), group_of("roundtrip")
    sent = message(
        topic,
        "order.created",
        key="order-42",
        properties={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    )
    message_id = await bus.publish(sent)
    assert message_id

    [got] = await receive_until(bus, group, topic, ["order.created"])
    assert got.message_id == message_id
    assert (got.topic, got.tag, got.key, got.body) == (
        topic,
        "order.created",
        "order-42",
        sent.body,
    )
    assert got.properties["traceparent"] == sent.properties["traceparent"]
    assert got.delivery_attempt == 1

    await bus.ack(group, got)
    # Acked: it never comes back, not even after its invisible duration.
    assert await receive_for(bus, group, topic, seconds=8, invisible=SHORT) == []


async def test_tag_filtering(bus: RocketMQBus) -> None:
    topic, picky, everything = topic_of("tags"), group_of("tags", 1), group_of("tags", 2)
    ids = {}
    for tag in ("a.one", "b.two", "c.three"):
        ids[tag] = await bus.publish(message(topic, tag))

    picked = await receive_until(bus, picky, topic, ["a.one", "c.three"], count=2)
    assert sorted(m.tag for m in picked) == ["a.one", "c.three"]
    for m in picked:
        await bus.ack(picky, m)
    assert await receive_for(bus, picky, topic, ["a.one", "c.three"], seconds=3) == []

    every = await receive_until(bus, everything, topic, ["*"], count=3)
    assert {m.message_id for m in every} == set(ids.values())


async def test_each_group_gets_every_message(bus: RocketMQBus) -> None:
    topic = topic_of("groups")
    message_id = await bus.publish(message(topic, "order.paid"))
    for group in (group_of("groups", 1), group_of("groups", 2)):
        [got] = await receive_until(bus, group, topic, ["order.paid"])
        assert got.message_id == message_id
        await bus.ack(group, got)


async def test_delay_topic_delivers_at_deliver_at(bus: RocketMQBus) -> None:
    topic, group = topic_of("delay"), group_of("delay")
    deliver_at = datetime.now(UTC) + timedelta(seconds=6)
    message_id = await bus.publish(message(topic, "order.payment_timeout", deliver_at=deliver_at))

    # Nothing before deliver_at (the polling stops 2 s early: a receive in flight
    # may run on for its 1 s wait)...
    early = await receive_for(
        bus, group, topic, seconds=max(0.0, (deliver_at - datetime.now(UTC)).total_seconds() - 2)
    )
    assert early == []
    # ... and then it arrives, not before deliver_at.
    [got] = await receive_until(bus, group, topic)
    assert datetime.now(UTC) >= deliver_at
    assert got.message_id == message_id
    assert got.delivery_attempt == 1
    await bus.ack(group, got)


async def test_delay_topic_without_deliver_at_delivers_now(bus: RocketMQBus) -> None:
    topic, group = topic_of("delay-now"), group_of("delay-now")
    past = datetime.now(UTC) - timedelta(minutes=5)  # a relay catching up late
    first = await bus.publish(message(topic, "order.payment_timeout"))
    second = await bus.publish(message(topic, "order.payment_timeout", deliver_at=past))
    got = await receive_until(bus, group, topic, count=2)
    assert {m.message_id for m in got} == {first, second}


async def test_deliver_at_on_a_normal_topic_is_refused(bus: RocketMQBus) -> None:
    later = datetime.now(UTC) + timedelta(seconds=30)
    with pytest.raises(ValueError, match="delayed"):
        await bus.publish(message(topic_of("roundtrip"), deliver_at=later))


async def test_change_invisible_duration_redelivers(bus: RocketMQBus) -> None:
    topic, group = topic_of("retry"), group_of("retry")
    message_id = await bus.publish(message(topic, "order.created"))
    [first] = await receive_until(bus, group, topic)
    assert first.delivery_attempt == 1

    await bus.change_invisible_duration(group, first, timedelta(seconds=1))
    [again] = await receive_until(bus, group, topic)
    assert again.message_id == message_id
    assert again.delivery_attempt == 2
    await bus.ack(group, again)
    assert await receive_for(bus, group, topic, seconds=6, invisible=SHORT) == []


async def test_unacked_message_comes_back_after_its_invisible_duration(bus: RocketMQBus) -> None:
    topic, group = topic_of("unacked"), group_of("unacked")
    message_id = await bus.publish(message(topic))
    [first] = await receive_until(bus, group, topic, invisible=SHORT)
    assert first.message_id == message_id
    # Not acked (the handler "crashed"): hidden for a while, then delivered again.
    [again] = await receive_until(bus, group, topic, invisible=SHORT)
    assert again.message_id == message_id
    assert again.delivery_attempt == first.delivery_attempt + 1
    await bus.ack(group, again)


async def test_a_new_consumer_gets_what_the_old_one_left_unacked(rocketmq: RocketMQServer) -> None:
    topic, group = topic_of("restart"), group_of("restart")
    old = RocketMQBus(rocketmq.endpoints)
    message_id = await old.publish(message(topic))
    [first] = await receive_until(old, group, topic, invisible=SHORT)
    assert first.message_id == message_id
    await old.close()  # the process "restarts" before acking

    new = RocketMQBus(rocketmq.endpoints)
    try:
        [again] = await receive_until(new, group, topic, invisible=SHORT)
        assert again.message_id == message_id
        assert again.delivery_attempt == 2
        await new.ack(group, again)
    finally:
        await new.close()


async def test_receive_does_not_block_the_event_loop(bus: RocketMQBus) -> None:
    topic, group = topic_of("loop"), group_of("loop")
    await bus.receive(group, topic, ["*"], wait=timedelta(seconds=1))  # consumer started
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        got = await asyncio.gather(
            *(bus.receive(group, topic, ["*"], wait=timedelta(seconds=2)) for _ in range(3))
        )
    finally:
        task.cancel()
    assert got == [[], [], []]
    # Three long polls ran at once while the loop kept ticking (at all, not fast).
    assert ticks >= 10


async def test_unknown_group_and_topic_are_unavailable(bus: RocketMQBus) -> None:
    with pytest.raises(BusUnavailable):
        await bus.receive(f"no-such-group-{RUN}", topic_of("roundtrip"), ["*"])
    with pytest.raises(BusUnavailable):
        await bus.publish(message(f"no-such-topic-{RUN}"))
    missing = RocketMQBus(bus.endpoints, ping_topic=f"no-such-topic-{RUN}")
    try:
        with pytest.raises(BusUnavailable, match="no route"):
            await missing.ping()
    finally:
        await missing.close()


async def test_a_broker_that_is_away_is_unavailable() -> None:
    away = RocketMQBus("127.0.0.1:9", request_timeout=timedelta(seconds=1))
    await away.start()  # starting needs no broker: services start while it is away
    try:
        with pytest.raises(BusUnavailable):
            await away.ping()
        with pytest.raises(BusUnavailable):
            await away.publish(message("user-events"))
    finally:
        await away.close()
    with pytest.raises(BusUnavailable, match="closed"):
        await away.publish(message("user-events"))


async def test_the_meshmart_topology_exists(rocketmq: RocketMQServer) -> None:
    for topic in TOPICS:
        route = await asyncio.to_thread(query_route, rocketmq.endpoints, topic.name)
        assert route.code == "OK", topic.name
        assert topic.kind.value in route.message_types, topic.name
    bus = RocketMQBus(rocketmq.endpoints)
    try:
        # Each group exists (the proxy lets it receive). The probe tag matches no
        # message, so nothing is taken from anyone else using the real topics.
        await asyncio.gather(
            *(
                bus.receive(group.name, group.topic, [PROBE_TAG], wait=timedelta(seconds=1))
                for group in CONSUMER_GROUPS
            )
        )
    finally:
        await bus.close()
