"""Messaging metrics (outbox, consumers) and the log context of event handling."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import AsyncClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.tests.messaging.ticketing import (
    FAST_CONSUMER,
    TICKET_EVENTS,
    TICKET_GROUP,
    DeadLetter,
    InboxEvent,
    OutboxEvent,
    Ticket,
    TicketOpened,
    TicketSettings,
    build_ticket_app,
    handlers,
)
from libs.common.tests.test_logging import json_lines
from meshmart_common.db import Database
from meshmart_common.messaging.bus import BusUnavailable, OutgoingMessage
from meshmart_common.messaging.consumer import (
    ConsumerRunner,
    EventDispatcher,
    IncomingEvent,
    Outcome,
)
from meshmart_common.messaging.envelope import REQUEST_ID_PROPERTY, CloudEvent, outgoing_message
from meshmart_common.messaging.local_bus import LocalBus
from meshmart_common.messaging.metrics import MessagingMetrics
from meshmart_common.messaging.outbox import EventPublisher, OutboxRelay
from meshmart_common.messaging.testing import FlakyBus, eventually
from meshmart_common.messaging.topology import consumer_group
from meshmart_common.observability import current_request_id
from meshmart_common.settings import Environment
from meshmart_common.testing import TestContext

GROUP = TICKET_GROUP.name
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def of_group(name: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, (("group", GROUP),)


def ticket_event(ticket_id: int, *, time: datetime | None = None) -> CloudEvent:
    event = TicketOpened(ticket_id=ticket_id, title="printer on fire").to_event(
        source="/meshmart/tickets", subject=str(ticket_id)
    )
    return event if time is None else event.model_copy(update={"time": time})


def ticket_message(event: CloudEvent, **properties: str) -> OutgoingMessage:
    return outgoing_message(event, TICKET_EVENTS, properties=properties)


# --- the whole path: requests, outbox, bus, consumer ----------------------------------


async def test_after_a_known_number_of_events_the_counters_show_exactly_those_numbers(
    client: AsyncClient,
) -> None:
    # Four tickets: two handled at once, one after a failed first delivery, and
    # one whose handler always fails (3 deliveries, then a dead letter).
    for title, fail_times in (("a", 0), ("b", 0), ("c", 1), ("d", -1)):
        response = await client.post(
            "/api/v1/tickets", json={"title": title, "fail_times": fail_times}
        )
        assert response.status_code == 201, response.text

    async def settled() -> Samples | None:
        samples = await scrape(client)
        done = (
            samples.get(of_group("consumer_messages_handled_total")) == 3
            and samples.get(of_group("consumer_messages_dead_lettered_total")) == 1
            and samples.get(("outbox_backlog", ())) == 0
        )
        return samples if done else None

    samples = await eventually(settled, what="every ticket handled or parked")
    assert samples is not None

    assert samples[("outbox_published_total", ())] == 4
    assert samples[("outbox_oldest_unsent_age_seconds", ())] == 0
    assert samples[of_group("consumer_messages_handled_total")] == 3
    assert samples[of_group("consumer_messages_failed_total")] == 1 + 3
    assert samples[of_group("consumer_messages_dead_lettered_total")] == 1
    assert samples[of_group("consumer_messages_duplicate_total")] == 0
    assert 0 <= samples[of_group("consumer_lag_seconds")] < 60
    http = (
        "http_requests_total",
        (("method", "POST"), ("route", "/api/v1/tickets"), ("status", "201")),
    )
    assert samples[http] == 4


async def test_the_metrics_survive_a_restart_of_the_app(test_context: TestContext) -> None:
    app = build_ticket_app(
        TicketSettings(
            environment=Environment.TEST,
            database_url=test_context.database_url,
            var_dir=test_context.tmp_path,
        ),
        test_context.tmp_path / "bus.db",
    )
    async with LifespanManager(app):
        first = app.state.messaging_metrics
        first.outbox_published.inc()
    # A second start must not register the series again (the registry refuses that).
    async with LifespanManager(app):
        assert app.state.messaging_metrics is first
        assert app.state.consumer_runners[0].metrics is first
        assert app.state.outbox_relay.metrics is first
    registry: CollectorRegistry = app.state.metrics.registry
    assert registry.get_sample_value("outbox_published_total") == 1


# --- the outbox --------------------------------------------------------------------------


async def open_ticket(database: Database, publisher: EventPublisher, title: str) -> None:
    async with database.session() as session:
        ticket = Ticket(title=title)
        session.add(ticket)
        await session.flush()
        await publisher.publish(session, TicketOpened(ticket_id=ticket.id, title=title), key=1)


async def test_outbox_gauges_show_the_unsent_rows_and_the_age_of_the_oldest(
    database: Database, local_bus: LocalBus
) -> None:
    registry = CollectorRegistry()
    metrics = MessagingMetrics(registry)
    bus = FlakyBus(local_bus)
    publisher = EventPublisher(OutboxEvent, source="/meshmart/tickets")
    relay = OutboxRelay(database, bus, OutboxEvent, metrics=metrics)
    await relay.refresh_metrics()
    assert registry.get_sample_value("outbox_backlog") == 0
    assert registry.get_sample_value("outbox_oldest_unsent_age_seconds") == 0

    await open_ticket(database, publisher, "first")
    await open_ticket(database, publisher, "second")
    async with database.session() as session:
        first_id = await session.scalar(select(func.min(OutboxEvent.id)))
        old = datetime.now(UTC) - timedelta(seconds=30)
        await session.execute(
            update(OutboxEvent).where(OutboxEvent.id == first_id).values(created_at=old)
        )
    bus.down = True
    with pytest.raises(BusUnavailable):
        await relay.publish_batch()
    await relay.refresh_metrics()

    assert registry.get_sample_value("outbox_backlog") == 2
    age = registry.get_sample_value("outbox_oldest_unsent_age_seconds")
    assert age is not None
    assert 30 <= age < 60
    assert registry.get_sample_value("outbox_published_total") == 0

    bus.down = False
    assert await relay.publish_pending() == 2
    await relay.refresh_metrics()
    assert registry.get_sample_value("outbox_published_total") == 2
    assert registry.get_sample_value("outbox_backlog") == 0
    assert registry.get_sample_value("outbox_oldest_unsent_age_seconds") == 0


# --- consumers -------------------------------------------------------------------------


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def runner(
    local_bus: LocalBus, database: Database, registry: CollectorRegistry
) -> AsyncIterator[ConsumerRunner]:
    consumer = ConsumerRunner(
        local_bus,
        database,
        TICKET_GROUP,
        handlers,
        inbox=InboxEvent,
        dead_letters=DeadLetter,
        settings=FAST_CONSUMER,
        metrics=MessagingMetrics(registry),
    )
    try:
        yield consumer
    finally:
        await consumer.stop()


def group_value(registry: CollectorRegistry, name: str) -> float | None:
    return registry.get_sample_value(name, {"group": GROUP})


async def test_a_group_shows_zero_counts_before_its_first_message(
    runner: ConsumerRunner, registry: CollectorRegistry
) -> None:
    for name in ("handled", "duplicate", "failed", "dead_lettered"):
        assert group_value(registry, f"consumer_messages_{name}_total") == 0


async def test_a_redelivered_event_counts_as_a_duplicate_not_as_handled(
    runner: ConsumerRunner, local_bus: LocalBus, registry: CollectorRegistry
) -> None:
    event = ticket_event(7)
    await local_bus.publish(ticket_message(event))
    await local_bus.publish(ticket_message(event))  # the relay died before "mark sent"

    outcomes: list[Outcome] = []
    while len(outcomes) < 2:
        outcomes += await eventually(runner.receive_and_process, what="a delivery")

    assert group_value(registry, "consumer_messages_handled_total") == 1
    assert group_value(registry, "consumer_messages_duplicate_total") == 1


async def test_consumer_lag_is_the_age_of_the_last_event_received(
    runner: ConsumerRunner, local_bus: LocalBus, registry: CollectorRegistry
) -> None:
    await local_bus.publish(
        ticket_message(ticket_event(1, time=datetime.now(UTC) - timedelta(seconds=40)))
    )
    await eventually(runner.receive_and_process, what="a delivery")
    lag = group_value(registry, "consumer_lag_seconds")
    assert lag is not None
    assert 40 <= lag < 70


def test_groups_of_a_delay_topic_report_no_lag() -> None:
    registry = CollectorRegistry()
    metrics = MessagingMetrics(registry)
    timeouts = consumer_group("order-payment-timeouts")
    metrics.record_received(timeouts, datetime.now(UTC) - timedelta(minutes=15))
    assert registry.get_sample_value("consumer_lag_seconds", {"group": timeouts.name}) is None


async def test_the_backlog_counts_due_messages_the_group_has_not_acked(
    runner: ConsumerRunner, local_bus: LocalBus, registry: CollectorRegistry
) -> None:
    for ticket_id in (1, 2, 3):
        await local_bus.publish(ticket_message(ticket_event(ticket_id)))
    # Neither another tag nor a message that is not due yet is the group's backlog.
    other = ticket_message(ticket_event(4))
    await local_bus.publish(
        OutgoingMessage(TICKET_EVENTS, "ticket.closed", "4", other.body, other.properties)
    )
    await local_bus.publish(
        OutgoingMessage(
            TICKET_EVENTS,
            "ticket.opened",
            "5",
            ticket_message(ticket_event(5)).body,
            deliver_at=datetime.now(UTC) + timedelta(hours=1),
        )
    )

    async def backlog() -> float | None:
        await runner.refresh_backlog()
        return group_value(registry, "consumer_backlog")

    assert await backlog() == 3
    [taken] = await local_bus.receive(GROUP, TICKET_EVENTS, TICKET_GROUP.tags, max_messages=1)
    assert await backlog() == 3  # handed out is not done
    await local_bus.ack(GROUP, taken)
    assert await backlog() == 2
    outcomes = await eventually(runner.receive_and_process, what="the rest")
    assert outcomes == [Outcome.HANDLED, Outcome.HANDLED]
    assert await backlog() == 0


async def test_a_bus_that_cannot_count_shows_no_backlog(
    local_bus: LocalBus, database: Database
) -> None:
    registry = CollectorRegistry()
    runner = ConsumerRunner(
        FlakyBus(local_bus),  # no backlog(): like RocketMQ
        database,
        TICKET_GROUP,
        handlers,
        inbox=InboxEvent,
        dead_letters=DeadLetter,
        metrics=MessagingMetrics(registry),
    )
    await runner.refresh_backlog()
    assert registry.get_sample_value("consumer_backlog", {"group": GROUP}) is None


# --- log lines written while an event is handled -----------------------------------------


async def test_log_lines_of_a_handler_carry_the_request_id_or_else_the_event_id(
    local_bus: LocalBus, database: Database
) -> None:
    logging_handlers = EventDispatcher()

    @logging_handlers.on(TicketOpened)
    async def note(session: AsyncSession, ticket: TicketOpened, event: IncomingEvent) -> None:
        logging.getLogger("tickets.handler").info("ticket %s opened", ticket.ticket_id)

    runner = ConsumerRunner(
        local_bus,
        database,
        TICKET_GROUP,
        logging_handlers,
        inbox=InboxEvent,
        dead_letters=DeadLetter,
        settings=FAST_CONSUMER,
    )
    plain, from_request = ticket_event(1), ticket_event(2)
    await local_bus.publish(ticket_message(plain))
    await local_bus.publish(ticket_message(from_request, **{REQUEST_ID_PROPERTY: "req-checkout-9"}))
    not_an_event = await local_bus.publish(
        OutgoingMessage(TICKET_EVENTS, "ticket.opened", "3", b"not json")
    )

    with json_lines("tickets") as lines:
        handled: list[Outcome] = []
        while len(handled) < 3:
            handled += await eventually(runner.receive_and_process, what="the deliveries")
    assert current_request_id() is None  # nothing stays bound after the messages

    handler_lines = [
        (e["message"], e["request_id"]) for e in lines() if e["logger"] == "tickets.handler"
    ]
    assert sorted(handler_lines) == [
        ("ticket 1 opened", plain.id),
        ("ticket 2 opened", "req-checkout-9"),
    ]
    # A message that is not a CloudEvent: its message id is all there is.
    [parked] = [e for e in lines() if e["logger"] == "meshmart.messaging.consumer"]
    assert (parked["level"], parked["request_id"]) == ("ERROR", not_an_event)


async def test_an_app_serves_the_messaging_series(app: FastAPI, client: AsyncClient) -> None:
    samples = await scrape(client)
    names = {name for name, _ in samples}
    assert {
        "outbox_published_total",
        "outbox_backlog",
        "outbox_oldest_unsent_age_seconds",
        "consumer_messages_handled_total",
        "consumer_messages_failed_total",
        "consumer_messages_dead_lettered_total",
        "consumer_messages_duplicate_total",
    } <= names
