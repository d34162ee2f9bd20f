"""Test helpers for order's events: read the outbox table, deliver saga replies to the consumers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.event import listen
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from meshmart_common.db import Database
from meshmart_common.events import EVENT_TYPES, EventData
from meshmart_common.messaging.consumer import ConsumerSpec, IncomingEvent, handle_once
from meshmart_common.messaging.envelope import CloudEvent
from meshmart_common.messaging.topology import topic_spec
from order_service.domain.outbox_port import OutgoingEvent
from order_service.repository.models import InboxEvent, OutboxEvent

E = TypeVar("E", bound=EventData)


def outgoing(row: OutboxEvent) -> OutgoingEvent:
    """An outbox row as the domain event it was written from (body parsed as a CloudEvent)."""
    envelope = CloudEvent.from_json(row.body)
    payload = EVENT_TYPES[envelope.type].from_event(envelope)
    return OutgoingEvent(payload, deliver_at=row.deliver_at)


@dataclass(frozen=True)
class OutboxReader:
    """The order outbox table as tests see it: every row written by committed transactions."""

    database: Database

    async def rows(self) -> list[OutboxEvent]:
        """Every outbox row in id order."""
        async with self.database.session() as session:
            return list(await session.scalars(select(OutboxEvent).order_by(OutboxEvent.id)))

    async def events(self) -> list[OutgoingEvent]:
        """Every event in the outbox, in the order it was written."""
        return [outgoing(row) for row in await self.rows()]

    async def of_type(self, event_type: type[E]) -> list[E]:
        """The payloads of ``event_type`` in the outbox, in order."""
        return [e.payload for e in await self.events() if isinstance(e.payload, event_type)]


def source_of(payload: EventData) -> str:
    """The CloudEvents source the owner of ``payload``'s topic publishes with."""
    return f"/meshmart/{topic_spec(payload.topic).owner}"


@dataclass(frozen=True)
class SagaDelivery:
    """``await deliver(payload)``: a saga reply handled as the consumer runner handles it.

    The app's EventDispatcher of the group that receives ``payload``'s type
    runs with the inbox row in one transaction (meshmart_common's
    ``handle_once``), which commits. Returns the events that transaction wrote
    to the outbox; raises AlreadyHandled when ``event_id`` was handled before.
    """

    database: Database
    consumers: list[ConsumerSpec]

    def consumer_of(self, payload: EventData) -> ConsumerSpec:
        """The consumer group that receives ``payload``'s type."""
        [spec] = [
            spec
            for spec in self.consumers
            if spec.group.topic == payload.topic and payload.event_type in spec.group.tags
        ]
        return spec

    async def __call__(
        self, payload: EventData, *, event_id: str | None = None
    ) -> list[OutgoingEvent]:
        spec = self.consumer_of(payload)
        envelope = payload.to_event(
            source=source_of(payload), subject=payload.aggregate_key(), event_id=event_id
        )
        event = IncomingEvent(
            envelope=envelope,
            consumer_group=spec.group.name,
            topic=spec.group.topic,
            message_id=f"test-{envelope.id}",
            key=payload.aggregate_key(),
        )
        written: list[OutboxEvent] = []
        events: list[OutgoingEvent] = []

        def collect(session: Session, *_: object) -> None:
            written.extend(row for row in session.new if isinstance(row, OutboxEvent))

        async def handler(session: AsyncSession, incoming: IncomingEvent) -> None:
            listen(session.sync_session, "before_flush", collect)
            await spec.handler(session, incoming)
            await session.flush()
            events.extend(outgoing(row) for row in sorted(written, key=lambda row: row.id))

        await handle_once(self.database, InboxEvent, handler, event)
        return events
