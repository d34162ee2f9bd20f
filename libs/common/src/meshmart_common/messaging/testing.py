"""Test helpers for code that publishes and consumes events (services' tests use them too).

- :func:`eventually` polls an async probe until it returns something truthy,
  so tests wait for background work without fixed sleeps;
- :class:`FlakyBus` wraps a real bus and fails on demand with
  ``BusUnavailable`` (the broker "goes away"), recording what got through.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection
from datetime import timedelta
from typing import TypeVar

from meshmart_common.messaging.bus import (
    BusUnavailable,
    MessageBus,
    OutgoingMessage,
    ReceivedMessage,
)

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    *,
    within: float = 15.0,
    interval: float = 0.02,
    what: str = "the condition",
) -> T:
    """Await ``probe()`` until it returns a truthy value and return that value.

    ``within`` (seconds) only bounds a broken test; it is not an assertion on speed.
    """
    deadline = time.monotonic() + within
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} did not happen within {within:.0f} s (last: {result!r})")
        await asyncio.sleep(interval)


class FlakyBus:
    """A MessageBus that delegates to ``inner`` except when told to fail.

    ``fail_publishes`` / ``fail_receives`` fail that many next calls;
    ``down = True`` fails every call until set back. ``published`` lists the
    messages that reached ``inner``, in order; ``acked`` the ids of acked
    messages and ``invisibility_changes`` each (message id, duration) asked for.
    """

    def __init__(self, inner: MessageBus) -> None:
        self.inner = inner
        self.name = inner.name
        self.down = False
        self.fail_publishes = 0
        self.fail_receives = 0
        self.publish_failures = 0
        self.receive_failures = 0
        self.published: list[OutgoingMessage] = []
        self.acked: list[str] = []
        self.invisibility_changes: list[tuple[str, timedelta]] = []

    def _check(self) -> None:
        if self.down:
            raise BusUnavailable("the bus is down (FlakyBus)")

    async def start(self) -> None:
        """Start the inner bus."""
        await self.inner.start()

    async def close(self) -> None:
        """Close the inner bus."""
        await self.inner.close()

    async def publish(self, message: OutgoingMessage) -> str:
        """Publish unless down or told to fail this call."""
        if self.down or self.fail_publishes > 0:
            self.fail_publishes = max(0, self.fail_publishes - 1)
            self.publish_failures += 1
            raise BusUnavailable("publish failed (FlakyBus)")
        message_id = await self.inner.publish(message)
        self.published.append(message)
        return message_id

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
        """Receive unless down or told to fail this call."""
        if self.down or self.fail_receives > 0:
            self.fail_receives = max(0, self.fail_receives - 1)
            self.receive_failures += 1
            # A failing broker does not answer at once either; without this a
            # test loop would spin.
            await asyncio.sleep(0.01)
            raise BusUnavailable("receive failed (FlakyBus)")
        return await self.inner.receive(
            group,
            topic,
            tags,
            max_messages=max_messages,
            invisible_duration=invisible_duration,
            wait=wait,
        )

    async def ack(self, group: str, message: ReceivedMessage) -> None:
        """Ack unless down."""
        self._check()
        await self.inner.ack(group, message)
        self.acked.append(message.message_id)

    async def change_invisible_duration(
        self, group: str, message: ReceivedMessage, duration: timedelta
    ) -> None:
        """Change the invisible duration unless down."""
        self._check()
        await self.inner.change_invisible_duration(group, message, duration)
        self.invisibility_changes.append((message.message_id, duration))

    async def ping(self) -> None:
        """Fail when down."""
        self._check()
        await self.inner.ping()
