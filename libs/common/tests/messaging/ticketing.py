"""A tiny "tickets" service with an outbox, an inbox and dead letters, for the messaging tests.

Opening a ticket (POST /tickets) stores it and publishes ``ticket.opened`` in
the same transaction; the service's own consumer group counts each opened
ticket by adding a ``handled_tickets`` row, which makes any double effect
visible. The payload's ``fail_times`` makes the handler fail on the first
deliveries (``-1``: on every delivery), to drive retries and dead letters.

The fixtures that put it on the test databases are in conftest.py.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel, Field
from sqlalchemy import Boolean, Integer, String, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from meshmart_common.app import create_app
from meshmart_common.db import Database, SessionDep, naming_metadata
from meshmart_common.errors import Conflict
from meshmart_common.messaging.bus import MessageBus
from meshmart_common.messaging.consumer import (
    ConsumerSpec,
    EventDispatcher,
    IncomingEvent,
)
from meshmart_common.messaging.dead_letters import dead_letter_router
from meshmart_common.messaging.envelope import EventPayload
from meshmart_common.messaging.lifespan import BusFactory, messaging_lifespan
from meshmart_common.messaging.local_bus import LocalBus
from meshmart_common.messaging.models import DeadLetterMixin, InboxMixin, OutboxMixin
from meshmart_common.messaging.outbox import EventPublisher
from meshmart_common.messaging.settings import ConsumerSettings, MessagingSettings, RelaySettings
from meshmart_common.messaging.topology import ConsumerGroupSpec
from meshmart_common.settings import ServiceSettings

TICKET_EVENTS = "test-ticket-events"


class Base(DeclarativeBase):
    """Declarative base of the tickets test service."""

    metadata = naming_metadata()


class OutboxEvent(OutboxMixin, Base):
    """The tickets service's outbox."""


class InboxEvent(InboxMixin, Base):
    """The tickets service's inbox."""


class DeadLetter(DeadLetterMixin, Base):
    """The tickets service's dead letters."""


class Ticket(Base):
    """A support ticket."""

    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    title: Mapped[str] = mapped_column(String(100))


class HandledTicket(Base):
    """One handling of a ticket.opened event (two rows for one event = a double effect)."""

    __tablename__ = "handled_tickets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(Integer)
    event_id: Mapped[str] = mapped_column(String(64))
    delivery_attempt: Mapped[int] = mapped_column(Integer)
    replay: Mapped[bool] = mapped_column(Boolean)


class TicketOpened(EventPayload):
    """A ticket was opened."""

    event_type = "ticket.opened"
    topic = TICKET_EVENTS

    ticket_id: int
    title: str
    fail_times: int = 0  # the handler fails on deliveries 1..fail_times; -1 = always


TICKET_GROUP = ConsumerGroupSpec(
    "test-ticket-counter", TICKET_EVENTS, (TicketOpened.event_type,), "tickets", "Count tickets."
)

FAST_RELAY = RelaySettings(
    poll_interval=timedelta(milliseconds=20),
    batch_size=10,
    claim_timeout=timedelta(seconds=5),
    retry_base=timedelta(milliseconds=20),
    retry_cap=timedelta(milliseconds=100),
)
FAST_CONSUMER = ConsumerSettings(
    max_attempts=3,
    retry_base=timedelta(milliseconds=50),
    retry_cap=timedelta(milliseconds=200),
    invisible_duration=timedelta(seconds=2),
    wait=timedelta(milliseconds=100),
    bus_retry_base=timedelta(milliseconds=20),
    bus_retry_cap=timedelta(milliseconds=100),
)

handlers = EventDispatcher()


@handlers.on(TicketOpened)
async def count_ticket(session: AsyncSession, ticket: TicketOpened, event: IncomingEvent) -> None:
    """Record one handling of the ticket; fail while ``fail_times`` says so."""
    if ticket.fail_times < 0 or event.delivery_attempt <= ticket.fail_times:
        raise RuntimeError(
            f"ticket {ticket.ticket_id} refused on delivery {event.delivery_attempt}"
        )
    session.add(
        HandledTicket(
            ticket_id=ticket.ticket_id,
            event_id=event.id,
            delivery_attempt=event.delivery_attempt,
            replay=event.replay,
        )
    )


CONSUMERS = [ConsumerSpec(TICKET_GROUP, handlers)]


class TicketSettings(ServiceSettings, MessagingSettings):
    """Settings of the tickets test service."""

    service_name: str = "tickets"


class TicketCreate(BaseModel):
    """Body of POST /tickets."""

    title: str = Field(min_length=1, max_length=100)
    fail_times: int = Field(default=0, ge=-1, le=100)
    roll_back: bool = False


class TicketRead(BaseModel):
    """A ticket and the id of its ticket.opened event."""

    id: int
    title: str
    event_id: str


def get_publisher(request: Request) -> EventPublisher:
    """The app's event publisher."""
    publisher: EventPublisher = request.app.state.publisher
    return publisher


tickets = APIRouter(prefix="/tickets", tags=["tickets"])


@tickets.post("", status_code=201)
async def open_ticket(
    body: TicketCreate,
    session: SessionDep,
    publisher: Annotated[EventPublisher, Depends(get_publisher)],
) -> TicketRead:
    """Open a ticket (publishes ticket.opened); ``roll_back`` fails after publishing."""
    ticket = Ticket(title=body.title)
    session.add(ticket)
    await session.flush()
    event = await publisher.publish(
        session,
        TicketOpened(ticket_id=ticket.id, title=ticket.title, fail_times=body.fail_times),
        key=ticket.id,
        properties={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    )
    if body.roll_back:
        raise Conflict("Rolled back on purpose.")
    return TicketRead(id=ticket.id, title=ticket.title, event_id=event.id)


def build_ticket_app(
    settings: TicketSettings, bus_path: Path, make_bus: BusFactory | None = None
) -> FastAPI:
    """The tickets test app: relay, consumer and dead-letter admin on a local bus file."""
    publisher = EventPublisher(OutboxEvent, source="/meshmart/tickets")
    if make_bus is None:

        def make_bus() -> MessageBus:
            return LocalBus(bus_path, poll_interval=timedelta(milliseconds=10))

    app = create_app(
        settings,
        title="MeshMart tickets test service",
        description="Exercises meshmart_common.messaging.",
        routers=[
            tickets,
            dead_letter_router(dead_letters=DeadLetter, inbox=InboxEvent, consumers=CONSUMERS),
        ],
        lifespan_hooks=[
            messaging_lifespan(
                make_bus,
                publisher=publisher,
                consumers=CONSUMERS,
                inbox=InboxEvent,
                dead_letters=DeadLetter,
                relay_settings=FAST_RELAY,
                consumer_settings=FAST_CONSUMER,
            )
        ],
    )
    app.state.publisher = publisher
    return app


async def count_rows(database: Database, model: type[Any]) -> int:
    """How many rows ``model``'s table holds."""
    async with database.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)
