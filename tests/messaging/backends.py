"""The bus backends the contract suite runs against, behind one small interface.

A backend gives the suite fresh bus objects on one shared broker (or file),
fresh topics and fresh consumer groups, so that tests never see each other's
messages. To add a backend, implement :class:`ContractBackend` and add a
branch to the ``contract_backend`` fixture in conftest.py.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Protocol

from meshmart_common.messaging.bus import MessageBus
from meshmart_common.messaging.local_bus import LocalBus
from meshmart_common.messaging.topology import TopicKind


class ContractBackend(Protocol):
    """What the contract tests need from a backend."""

    name: str
    # The shortest invisible duration the backend accepts (RocketMQ's proxy has a floor).
    short_invisible: timedelta

    async def new_bus(self) -> MessageBus:
        """A started bus object on the shared broker (a new "process")."""
        ...

    async def new_topic(self, kind: TopicKind = TopicKind.NORMAL) -> str:
        """A topic no other test uses, existing before anyone publishes to it."""
        ...

    async def new_group(self, topic: str, tags: tuple[str, ...]) -> str:
        """A consumer group of ``topic`` no other test uses, known to the broker."""
        ...

    async def close(self) -> None:
        """Close every bus this backend created."""
        ...


class LocalContractBackend:
    """The local SQLite bus: every "process" opens the same file."""

    name = "local"
    short_invisible = timedelta(seconds=1)

    def __init__(self, path: Path) -> None:
        self.path = path
        self._buses: list[MessageBus] = []

    async def new_bus(self) -> MessageBus:
        """A started LocalBus on the shared file."""
        bus = LocalBus(self.path, poll_interval=timedelta(milliseconds=20), groups=())
        await bus.start()
        self._buses.append(bus)
        return bus

    async def new_topic(self, kind: TopicKind = TopicKind.NORMAL) -> str:
        """Topics need no creation on the local bus."""
        return f"contract-{kind.value.lower()}-{uuid.uuid4().hex[:10]}"

    async def new_group(self, topic: str, tags: tuple[str, ...]) -> str:
        """Groups need no creation on the local bus."""
        return f"contract-group-{uuid.uuid4().hex[:10]}"

    async def close(self) -> None:
        """Close the buses (closing twice is fine)."""
        for bus in self._buses:
            await bus.close()
