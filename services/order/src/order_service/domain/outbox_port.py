"""The port to the transactional outbox: how the order service hands over its events.

Domain methods never publish. They return the events their change implies
(:class:`OutgoingEvent`: a payload from meshmart_common.events and, for the
payment timeout, when to deliver it); the caller (a route, or a saga event
handler) passes them to an :class:`EventSink` on the *same* session as the
change, so the event is written if and only if the change commits.

The sink of the running service is order_service.events.outbox.OutboxSink:
it writes an outbox row (meshmart_common.messaging) in that session, and the
relay publishes it once the transaction has committed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.events import EventData


@dataclass(frozen=True, slots=True)
class OutgoingEvent:
    """An event a domain change implies; ``deliver_at`` delays it (timezone-aware)."""

    payload: EventData
    deliver_at: datetime | None = None


class EventSink(Protocol):
    """Where events go: the transactional outbox."""

    async def emit(
        self, session: AsyncSession, payload: EventData, deliver_at: datetime | None = None
    ) -> None:
        """Record ``payload`` in ``session``'s transaction, to be published once it commits."""
        ...


async def emit_all(sink: EventSink, session: AsyncSession, events: Iterable[OutgoingEvent]) -> None:
    """Hand every event of a domain change to ``sink`` in the change's session."""
    for outgoing in events:
        await sink.emit(session, outgoing.payload, outgoing.deliver_at)
