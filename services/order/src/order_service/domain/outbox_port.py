"""The port to the transactional outbox: how the order service hands over its events.

Domain methods never publish. They return the events their change implies
(:class:`OutgoingEvent`: a payload from meshmart_common.events and, for the
payment timeout, when to deliver it); the caller (a route, or a saga event
handler) passes them to an :class:`EventSink` on the *same* session as the
change, so the event is written if and only if the change commits.

The real sink, the transactional outbox of meshmart_common.messaging, writes
an outbox row in that session and its relay publishes it after commit. Until
it lands, :class:`InMemoryOutbox` stands in: it keeps (and logs) the events of
transactions that committed and drops those of transactions that rolled
back, which is the behaviour the outbox gives, minus the broker. Wiring the
real outbox is one line in order_service.main (``app.state.event_sink``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from meshmart_common.events import EventData

logger = logging.getLogger("order.outbox")

E = TypeVar("E", bound=EventData)


@dataclass(frozen=True, slots=True)
class OutgoingEvent:
    """An event a domain change implies; ``deliver_at`` delays it (timezone-aware)."""

    payload: EventData
    deliver_at: datetime | None = None


class EventSink(Protocol):
    """Where events go: the transactional outbox (or a stand-in for it)."""

    async def emit(
        self, session: AsyncSession, payload: EventData, deliver_at: datetime | None = None
    ) -> None:
        """Record ``payload`` in ``session``'s transaction, to be published once it commits."""
        ...


async def emit_all(sink: EventSink, session: AsyncSession, events: Iterable[OutgoingEvent]) -> None:
    """Hand every event of a domain change to ``sink`` in the change's session."""
    for outgoing in events:
        await sink.emit(session, outgoing.payload, outgoing.deliver_at)


_PENDING_KEY = "order_service.outbox.pending"


class InMemoryOutbox:
    """An EventSink that keeps the events of committed transactions in memory.

    A stand-in for the transactional outbox until meshmart_common.messaging
    provides it: nothing reaches a broker, but ``committed`` holds exactly what
    the outbox would publish, in order, and each committed event is logged.
    """

    def __init__(self) -> None:
        self.committed: list[OutgoingEvent] = []

    async def emit(
        self, session: AsyncSession, payload: EventData, deliver_at: datetime | None = None
    ) -> None:
        """Hold ``payload`` until ``session`` commits (dropped if it rolls back)."""
        # Join the session's transaction as an outbox row write would: a
        # rollback of a transaction that never began tells no listener.
        await session.connection()
        sync_session = session.sync_session
        pending: list[OutgoingEvent] | None = sync_session.info.get(_PENDING_KEY)
        if pending is None:
            pending = []
            sync_session.info[_PENDING_KEY] = pending
            event.listen(sync_session, "after_commit", self._after_commit)
            event.listen(sync_session, "after_rollback", self._after_rollback)
        pending.append(OutgoingEvent(payload=payload, deliver_at=deliver_at))

    def _after_commit(self, session: Session) -> None:
        pending: list[OutgoingEvent] = session.info.get(_PENDING_KEY, [])
        for outgoing in pending:
            logger.info(
                "event %s key=%s deliver_at=%s (in-memory outbox: not published to a broker)",
                outgoing.payload.event_type,
                outgoing.payload.aggregate_key(),
                outgoing.deliver_at.isoformat() if outgoing.deliver_at else "now",
            )
        self.committed.extend(pending)
        pending.clear()

    def _after_rollback(self, session: Session) -> None:
        pending: list[OutgoingEvent] = session.info.get(_PENDING_KEY, [])
        pending.clear()

    def of_type(self, event_type: type[E]) -> list[E]:
        """The committed payloads of ``event_type``, in order."""
        return [o.payload for o in self.committed if isinstance(o.payload, event_type)]
