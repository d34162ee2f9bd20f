"""Tracing through the outbox and the bus: request -> PRODUCER (relay) -> CONSUMER (handler).

The tickets test service (messaging/ticketing.py) runs with its relay and
consumer on a local bus file; a route of this module opens tickets without
passing any message properties, so whatever trace context travels is the
one the publisher and the relay put there.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import httpx
from asgi_lifespan import LifespanManager
from fastapi import APIRouter, Depends, FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import select

from libs.common.tests.messaging.ticketing import (
    CONSUMERS,
    FAST_CONSUMER,
    FAST_RELAY,
    TICKET_EVENTS,
    TICKET_GROUP,
    Base,
    HandledTicket,
    OutboxEvent,
    Ticket,
    TicketOpened,
    TicketSettings,
    count_rows,
    get_publisher,
)
from libs.common.tests.messaging.ticketing import DeadLetter as TicketDeadLetter
from libs.common.tests.messaging.ticketing import InboxEvent as TicketInbox
from meshmart_common.app import create_app
from meshmart_common.db import Database, SessionDep
from meshmart_common.messaging.bus import MessageBus
from meshmart_common.messaging.envelope import REQUEST_ID_PROPERTY
from meshmart_common.messaging.local_bus import LocalBus
from meshmart_common.messaging.outbox import EventPublisher
from meshmart_common.messaging.testing import eventually
from meshmart_common.settings import Environment
from meshmart_common.tracing import tracer

SEND = f"send {TICKET_EVENTS} ticket.opened"
PROCESS = f"process {TICKET_EVENTS} ticket.opened"
ROUTE = "POST /api/v1/traced-tickets"


traced = APIRouter(prefix="/traced-tickets", tags=["tickets"])


@traced.post("", status_code=201)
async def open_traced_ticket(
    session: SessionDep,
    publisher: Annotated[EventPublisher, Depends(get_publisher)],
    fail_times: int = 0,
) -> dict[str, int | str]:
    """Open a ticket; the publisher adds the trace context by itself."""
    ticket = Ticket(title="traced")
    session.add(ticket)
    await session.flush()
    event = await publisher.publish(
        session,
        TicketOpened(ticket_id=ticket.id, title=ticket.title, fail_times=fail_times),
        key=ticket.id,
    )
    return {"id": ticket.id, "event_id": event.id}


def ticket_app(tmp_path: Path) -> FastAPI:
    from meshmart_common.messaging.lifespan import messaging_lifespan

    settings = TicketSettings(
        environment=Environment.TEST,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'tickets.db'}",
        var_dir=tmp_path,
    )
    publisher = EventPublisher(OutboxEvent, source="/meshmart/tickets")

    def make_bus() -> MessageBus:
        return LocalBus(tmp_path / "bus.db", poll_interval=timedelta(milliseconds=10))

    app = create_app(
        settings,
        title="tickets (tracing)",
        description="Tracing through the outbox.",
        routers=[traced],
        lifespan_hooks=[
            messaging_lifespan(
                make_bus,
                publisher=publisher,
                consumers=CONSUMERS,
                inbox=TicketInbox,
                dead_letters=TicketDeadLetter,
                relay_settings=FAST_RELAY,
                consumer_settings=FAST_CONSUMER,
            )
        ],
    )
    app.state.publisher = publisher
    return app


@contextlib.asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    await app.state.database.run_sync(Base.metadata.create_all)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


def named(spans: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in spans.get_finished_spans() if span.name == name]


async def finished(spans: InMemorySpanExporter, name: str, count: int = 1) -> list[ReadableSpan]:
    async def probe() -> list[ReadableSpan]:
        found = named(spans, name)
        return found if len(found) >= count else []

    return await eventually(probe, what=f"{count} finished {name!r} span(s)")


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def attributes(span: ReadableSpan) -> dict[str, object]:
    return dict(span.attributes or {})


async def outbox_row(app: FastAPI) -> OutboxEvent:
    database: Database = app.state.database
    async with database.session() as session:
        row: OutboxEvent | None = await session.scalar(select(OutboxEvent))
    assert row is not None
    return row


async def test_an_event_carries_the_request_trace_through_outbox_relay_and_consumer(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    app = ticket_app(tmp_path)
    async with running(app) as http:
        created = await http.post("/api/v1/traced-tickets")
        assert created.status_code == 201, created.text
        [process] = await finished(spans, PROCESS)
        row = await outbox_row(app)
        assert await count_rows(app.state.database, HandledTicket) == 1

    [request] = named(spans, ROUTE)
    [send] = named(spans, SEND)
    trace_id = request.context.trace_id
    # The outbox row stored the request's context ...
    assert row.properties["traceparent"].startswith(
        f"00-{trace_id:032x}-{request.context.span_id:016x}-"
    )
    # ... the relay's PRODUCER span continues it ...
    assert send.kind is SpanKind.PRODUCER
    assert send.context.trace_id == trace_id
    assert parent_id(send) == request.context.span_id
    assert attributes(send) == {
        "messaging.system": "meshmart-local-bus",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": TICKET_EVENTS,
        "messaging.rocketmq.message.tag": "ticket.opened",
        "messaging.rocketmq.message.keys": (str(created.json()["id"]),),
        "messaging.message.id": row.message_id,
        "cloudevents.event_id": created.json()["event_id"],
        "cloudevents.event_type": "ticket.opened",
    }
    # ... and the CONSUMER span is the PRODUCER span's child, across the bus.
    assert process.kind is SpanKind.CONSUMER
    assert process.context.trace_id == trace_id
    assert parent_id(process) == send.context.span_id
    consumed = attributes(process)
    assert consumed["messaging.system"] == "meshmart-local-bus"
    assert consumed["messaging.operation.type"] == "process"
    assert consumed["messaging.destination.name"] == TICKET_EVENTS
    assert consumed["messaging.consumer.group.name"] == TICKET_GROUP.name
    assert consumed["messaging.message.id"] == row.message_id
    assert consumed["messaging.rocketmq.message.tag"] == "ticket.opened"
    assert consumed["messaging.meshmart.outcome"] == "handled"
    assert process.status.status_code is StatusCode.UNSET
    # The handler's statements (inbox row, effect) are the consumer's children.
    inserts = [
        s
        for s in spans.get_finished_spans()
        if s.name.startswith("INSERT") and parent_id(s) == process.context.span_id
    ]
    assert len(inserts) >= 2


async def test_each_delivery_of_a_retried_event_is_a_consumer_span_below_the_one_send(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    async with running(ticket_app(tmp_path)) as http:
        created = await http.post("/api/v1/traced-tickets", params={"fail_times": 1})
        assert created.status_code == 201, created.text
        first, second = await finished(spans, PROCESS, count=2)

    [send] = named(spans, SEND)
    assert parent_id(first) == parent_id(second) == send.context.span_id
    assert attributes(first)["messaging.meshmart.outcome"] == "retrying"
    assert attributes(first)["messaging.meshmart.delivery_attempt"] == 1
    assert first.status.status_code is StatusCode.ERROR
    assert [event.name for event in first.events] == ["exception"]
    assert attributes(second)["messaging.meshmart.outcome"] == "handled"
    assert attributes(second)["messaging.meshmart.delivery_attempt"] == 2


async def test_an_event_written_outside_any_trace_starts_one_at_the_relay(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    app = ticket_app(tmp_path)
    publisher: EventPublisher = app.state.publisher
    async with running(app):
        async with app.state.database.session() as session:  # a background job, no request
            ticket = Ticket(title="batch")
            session.add(ticket)
            await session.flush()
            await publisher.publish(
                session, TicketOpened(ticket_id=ticket.id, title="batch"), key=ticket.id
            )
        [process] = await finished(spans, PROCESS)

    assert (await outbox_row(app)).properties == {}
    [send] = named(spans, SEND)
    assert send.parent is None
    assert parent_id(process) == send.context.span_id


async def test_with_tracing_off_events_travel_without_trace_context(tmp_path: Path) -> None:
    app = ticket_app(tmp_path)
    async with running(app) as http:
        with tracer().start_as_current_span("ignored") as span:
            assert not span.is_recording()
        created = await http.post("/api/v1/traced-tickets")
        assert created.status_code == 201, created.text

        async def handled() -> int:
            return await count_rows(app.state.database, HandledTicket)

        await eventually(handled, what="the ticket handled")
        row = await outbox_row(app)

    # No trace context; only the request id the event was published under.
    assert set(row.properties) == {REQUEST_ID_PROPERTY}
    assert row.properties[REQUEST_ID_PROPERTY] == created.headers["x-request-id"]
    assert row.message_id
