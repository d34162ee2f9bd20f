"""The lifespan hook: a service publishes, relays and consumes on its own, and stops cleanly."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import select

from libs.common.tests.messaging.ticketing import (
    CONSUMERS,
    HandledTicket,
    InboxEvent,
    OutboxEvent,
    Ticket,
    TicketSettings,
    build_ticket_app,
)
from meshmart_common.db import Database
from meshmart_common.messaging.bus import BusUnavailable, MessageBus
from meshmart_common.messaging.consumer import ConsumerRunner
from meshmart_common.messaging.lifespan import (
    bus_factory,
    messaging_lifespan,
)
from meshmart_common.messaging.local_bus import LocalBus
from meshmart_common.messaging.outbox import OutboxRelay
from meshmart_common.messaging.rocketmq import RocketMQBus
from meshmart_common.messaging.testing import eventually
from meshmart_common.settings import Environment
from meshmart_common.testing import TestContext, assert_problem


async def handled_rows(database: Database) -> list[HandledTicket]:
    async with database.session() as session:
        return list(await session.scalars(select(HandledTicket).order_by(HandledTicket.id)))


async def test_an_event_goes_from_the_request_through_the_bus_to_the_handler(
    app: FastAPI, client: AsyncClient
) -> None:
    response = await client.post("/api/v1/tickets", json={"title": "printer on fire"})
    assert response.status_code == 201, response.text
    ticket = response.json()
    database: Database = app.state.database

    async def effect() -> list[HandledTicket]:
        return await handled_rows(database)

    [handled] = await eventually(effect, what="the consumer's effect")
    assert (handled.ticket_id, handled.event_id) == (ticket["id"], ticket["event_id"])
    async with database.session() as session:
        inbox = (await session.scalars(select(InboxEvent))).one()
    assert inbox.event_id == ticket["event_id"]

    async def marked_sent() -> bool:
        # The relay marks the row after publishing, so possibly after the handler ran.
        async with database.session() as session:
            outbox = (await session.scalars(select(OutboxEvent))).one()
        return outbox.sent_at is not None and outbox.message_id is not None

    await eventually(marked_sent, what="the outbox row marked sent")


async def test_a_rolled_back_request_publishes_nothing(app: FastAPI, client: AsyncClient) -> None:
    failed = await client.post("/api/v1/tickets", json={"title": "oops", "roll_back": True})
    assert_problem(failed, 409)
    kept = await client.post("/api/v1/tickets", json={"title": "kept"})
    database: Database = app.state.database

    async def effect() -> list[HandledTicket]:
        return await handled_rows(database)

    # Once the later event is handled, the earlier one would have been too.
    [handled] = await eventually(effect, what="the kept ticket's effect")
    assert handled.event_id == kept.json()["event_id"]
    async with database.session() as session:
        assert [t.title for t in await session.scalars(select(Ticket))] == ["kept"]
        assert len(list(await session.scalars(select(OutboxEvent)))) == 1


async def test_the_bus_is_part_of_readiness(client: AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"database": "ok", "bus": "ok"}


async def test_shutdown_stops_the_consumers_and_the_relay_then_closes_the_bus(
    test_context: TestContext,
) -> None:
    app = build_ticket_app(
        TicketSettings(
            environment=Environment.TEST,
            database_url=test_context.database_url,
            var_dir=test_context.tmp_path,
        ),
        test_context.tmp_path / "bus.db",
    )
    async with LifespanManager(app):
        runners: list[ConsumerRunner] = app.state.consumer_runners
        relay: OutboxRelay = app.state.outbox_relay
        bus: MessageBus = app.state.bus
        assert [runner.group.name for runner in runners] == [spec.group.name for spec in CONSUMERS]
        tasks = [runner._task for runner in runners] + [relay._task]
        assert all(task is not None and not task.done() for task in tasks)

    assert all(task is not None and task.done() for task in tasks)
    with pytest.raises(BusUnavailable):
        await bus.ping()


class LateBus(LocalBus):
    """A local bus that cannot start until ``reachable`` is set."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, groups=())
        self.attempts = 0
        self.reachable = asyncio.Event()

    async def start(self) -> None:
        self.attempts += 1
        if not self.reachable.is_set():
            raise BusUnavailable("not there yet")
        await super().start()


async def test_a_bus_that_is_down_at_start_up_keeps_readiness_red_until_it_is_up(
    test_context: TestContext,
) -> None:
    bus = LateBus(test_context.tmp_path / "bus.db")
    app = build_ticket_app(
        TicketSettings(
            environment=Environment.TEST,
            database_url=test_context.database_url,
            var_dir=test_context.tmp_path,
        ),
        test_context.tmp_path / "bus.db",
        make_bus=lambda: bus,
    )
    async with LifespanManager(app) as manager:
        transport = ASGITransport(app=manager.app)
        async with AsyncClient(transport=transport, base_url="http://testserver") as client:
            not_ready = await client.get("/readyz")
            problem = assert_problem(not_ready, 503)
            assert problem["failing"] == ["bus"]
            bus.reachable.set()

            async def ready() -> bool:
                return (await client.get("/readyz")).status_code == 200

            await eventually(ready, what="readiness once the bus started")
    assert bus.attempts >= 2


def test_consumers_need_the_inbox_and_dead_letter_models_and_unique_groups() -> None:
    with pytest.raises(ValueError, match="inbox"):
        messaging_lifespan(lambda: LocalBus("unused.db"), consumers=CONSUMERS)
    with pytest.raises(ValueError, match="twice"):
        messaging_lifespan(
            lambda: LocalBus("unused.db"),
            consumers=[*CONSUMERS, *CONSUMERS],
            inbox=InboxEvent,
            dead_letters=OutboxEvent,  # type: ignore[arg-type]
        )


def test_the_bus_factory_follows_the_settings(tmp_path: Path) -> None:
    settings = TicketSettings(var_dir=tmp_path)
    bus = bus_factory(settings, settings.var_dir)()
    assert isinstance(bus, LocalBus)
    assert bus.path == tmp_path / "bus.db"

    rocketmq = bus_factory(
        TicketSettings(var_dir=tmp_path, bus_backend="rocketmq", rocketmq_endpoints="mq:8081"),
        tmp_path,
    )()
    assert isinstance(rocketmq, RocketMQBus)
    assert rocketmq.endpoints == "mq:8081"
