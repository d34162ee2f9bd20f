"""The message bus interface: what every backend (local SQLite bus, RocketMQ 5) provides.

The model follows RocketMQ 5's SimpleConsumer, so both backends map onto it
one to one:

- a **topic** carries messages; each message has one **tag** (the event type,
  e.g. ``order.created``), a **key** (the aggregate id), a body (the
  CloudEvents JSON envelope) and string **properties** (W3C trace context);
- a **consumer group** subscribes to one topic with a set of tags and keeps
  its own progress: two groups on one topic each get every message;
- ``receive`` hands out messages and hides each one from the group for an
  *invisible duration*; ``ack`` removes it for that group; a message not
  acked in time (handler crashed, process killed) becomes visible again and
  is redelivered with ``delivery_attempt`` + 1; ``change_invisible_duration``
  schedules a retry after a backoff;
- ``deliver_at`` delays a message (the payment timeout): no group sees it
  before that time.

Delivery is at least once. Handlers make effects exactly once with the inbox
(see consumer.py).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message to publish."""

    topic: str
    tag: str
    key: str
    body: bytes
    properties: Mapping[str, str] = field(default_factory=dict)
    deliver_at: datetime | None = None  # timezone-aware; None = now


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """A message handed to a consumer group; ack it or let it come back."""

    message_id: str
    topic: str
    tag: str
    key: str
    body: bytes
    properties: Mapping[str, str]
    delivery_attempt: int  # 1 on first delivery
    receipt: object  # backend-specific handle for ack / change_invisible_duration


@runtime_checkable
class MessageBus(Protocol):
    """A message bus backend. All methods are async and never block the event loop."""

    name: str  # "local" or "rocketmq"

    async def start(self) -> None:
        """Connect (idempotent)."""
        ...

    async def close(self) -> None:
        """Release connections and threads."""
        ...

    async def publish(self, message: OutgoingMessage) -> str:
        """Send one message; return its message id. Raise BusUnavailable when it cannot."""
        ...

    async def receive(
        self,
        group: str,
        topic: str,
        tags: Collection[str],
        *,
        max_messages: int = 16,
        invisible_duration: timedelta = timedelta(seconds=30),
        wait: timedelta = timedelta(seconds=1),
    ) -> list[ReceivedMessage]:
        """Up to ``max_messages`` visible messages of ``topic`` with one of ``tags`` for
        ``group``, waiting at most ``wait`` when there are none."""
        ...

    async def ack(self, group: str, message: ReceivedMessage) -> None:
        """Done with ``message`` for ``group``: it is never delivered to the group again."""
        ...

    async def change_invisible_duration(
        self, group: str, message: ReceivedMessage, duration: timedelta
    ) -> None:
        """Redeliver ``message`` to ``group`` after ``duration`` (retry with backoff)."""
        ...

    async def ping(self) -> None:
        """Raise when the bus is not reachable (readiness check)."""
        ...


class BusUnavailable(Exception):
    """The bus cannot take or hand out messages right now; retry later."""
