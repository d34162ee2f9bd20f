"""The MessageBus contract suite (test_bus_contract.py) against RocketMQ 5.

The suite's tests are imported here and run with ``contract_backend`` overridden
by :class:`RocketMQContractBackend`, on the session's real RocketMQ (the
``rocketmq_server`` fixture of meshmart_devstack.pytest_rocketmq). Creating a
topic or group takes one admin-tool JVM (seconds), so a pool of them is
created in one batch and handed out one by one.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from meshmart_common.messaging.bus import MessageBus
from meshmart_common.messaging.rocketmq import RocketMQBus
from meshmart_common.messaging.topology import TopicKind
from meshmart_devstack.rocketmq import RocketMQServer, TopicSpec
from tests.messaging.test_bus_contract import (  # noqa: F401 - collected here again
    test_a_delayed_message_is_not_visible_before_its_delivery_time,
    test_a_delivery_time_in_the_past_means_now,
    test_a_group_only_gets_the_tags_it_subscribes_to,
    test_a_message_not_acked_in_time_is_redelivered,
    test_a_published_message_arrives_with_its_fields_and_ack_settles_it,
    test_change_invisible_duration_brings_the_message_back_with_the_next_attempt,
    test_consumers_of_one_group_share_the_messages_without_duplicates,
    test_messages_published_before_a_group_first_receives_are_delivered,
    test_nothing_is_lost_when_a_consumer_restarts,
    test_ping_answers_while_the_bus_is_up,
    test_receive_hands_out_at_most_max_messages,
    test_two_groups_each_get_every_message_independently,
)

POOL_TOPICS = {TopicKind.NORMAL: 16, TopicKind.DELAY: 4}
POOL_GROUPS = 32


class RocketMQPool:
    """Topics and groups created up front in one batch, handed out once each."""

    def __init__(self, server: RocketMQServer) -> None:
        self.server = server
        run = uuid.uuid4().hex[:8]
        self.topics = {
            kind: [f"contract-{kind.value.lower()}-{run}-{n}" for n in range(count)]
            for kind, count in POOL_TOPICS.items()
        }
        self.groups = [f"contract-group-{run}-{n}" for n in range(POOL_GROUPS)]
        server.create(
            [TopicSpec(name, kind.value) for kind, names in self.topics.items() for name in names],
            self.groups,
        )

    async def topic(self, kind: TopicKind) -> str:
        if self.topics[kind]:
            return self.topics[kind].pop()
        name = f"contract-{kind.value.lower()}-{uuid.uuid4().hex[:10]}"
        await asyncio.to_thread(self.server.create_topic, name, kind.value)
        return name

    async def group(self) -> str:
        if self.groups:
            return self.groups.pop()
        name = f"contract-group-{uuid.uuid4().hex[:10]}"
        await asyncio.to_thread(self.server.create_group, name)
        return name


class RocketMQContractBackend:
    """ContractBackend (tests/messaging/backends.py) for a real RocketMQ."""

    name = "rocketmq"
    # The devstack proxy's floor (minInvisibleTimeMillsForRecv = 1 s).
    short_invisible = timedelta(seconds=1)

    def __init__(self, pool: RocketMQPool) -> None:
        self.pool = pool
        self._buses: list[RocketMQBus] = []

    async def new_bus(self) -> MessageBus:
        bus = RocketMQBus(self.pool.server.endpoints)
        await bus.start()
        self._buses.append(bus)
        return bus

    async def new_topic(self, kind: TopicKind = TopicKind.NORMAL) -> str:
        return await self.pool.topic(kind)

    async def new_group(self, topic: str, tags: tuple[str, ...]) -> str:
        return await self.pool.group()

    async def close(self) -> None:
        for bus in self._buses:
            await bus.close()


@pytest.fixture(scope="module")
def rocketmq_pool(rocketmq_server: RocketMQServer) -> RocketMQPool:
    return RocketMQPool(rocketmq_server)


@pytest.fixture
async def contract_backend(rocketmq_pool: RocketMQPool) -> AsyncIterator[RocketMQContractBackend]:
    """Overrides the suite's backend fixture: RocketMQ only, in this module."""
    backend = RocketMQContractBackend(rocketmq_pool)
    try:
        yield backend
    finally:
        await backend.close()
