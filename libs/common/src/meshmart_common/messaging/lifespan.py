"""Wiring for a service: the lifespan hook that runs the bus, the relay and the consumers.

::

    app = create_app(
        settings,
        ...,
        routers=[..., dead_letter_router(dead_letters=DeadLetter, inbox=InboxEvent,
                                         consumers=CONSUMERS)],
        lifespan_hooks=[
            messaging_lifespan(
                bus_factory(settings, settings.var_dir),
                publisher=publisher,
                consumers=CONSUMERS,
                inbox=InboxEvent,
                dead_letters=DeadLetter,
                relay_settings=settings.relay_settings(),
                consumer_settings=settings.consumer_settings(),
            )
        ],
    )

At start-up the hook creates and starts the bus (``app.state.bus``), adds the
readiness check "bus", and starts the outbox relay (``app.state.outbox_relay``)
and one runner per consumer (``app.state.consumer_runners``), all counting
into one MessagingMetrics in the app's registry (``app.state.messaging_metrics``,
served at /metrics). A bus that
cannot start yet does not keep the service down: the hook keeps trying in the
background while /readyz reports "bus" failing, and the relay and consumers
back off until it is there. At shutdown it stops the consumers (each finishes
the message in hand), then the relay, then closes the bus; create_app
disposes of the database after that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from meshmart_common.app import LifespanHook
from meshmart_common.db import Database
from meshmart_common.messaging.backoff import Backoff
from meshmart_common.messaging.bus import MessageBus
from meshmart_common.messaging.consumer import ConsumerRunner, ConsumerSpec
from meshmart_common.messaging.local_bus import LocalBus
from meshmart_common.messaging.metrics import MessagingMetrics
from meshmart_common.messaging.models import DeadLetterMixin, InboxMixin
from meshmart_common.messaging.outbox import EventPublisher, OutboxRelay
from meshmart_common.messaging.settings import ConsumerSettings, MessagingSettings, RelaySettings

logger = logging.getLogger("meshmart.messaging")

BusFactory = Callable[[], MessageBus]

_START_BACKOFF = Backoff(timedelta(seconds=1), timedelta(seconds=30))


class BusConfigurationError(RuntimeError):
    """The settings name a bus backend that cannot be built here."""


def bus_factory(settings: MessagingSettings, var_dir: Path) -> BusFactory:
    """The bus the settings choose (BUS_BACKEND); ``var_dir`` holds the local bus file."""
    if settings.bus_backend == "local":
        path = settings.local_bus_file(var_dir)
        retention = timedelta(hours=settings.local_bus_retention_hours)
        return lambda: LocalBus(path, retention=retention)
    if settings.bus_backend == "rocketmq":
        # Imported here: the RocketMQ client pulls in gRPC, which the local bus never needs.
        from meshmart_common.messaging.rocketmq import RocketMQBus

        return lambda: RocketMQBus(
            settings.rocketmq_endpoints,
            namespace=settings.rocketmq_namespace,
            access_key=settings.rocketmq_access_key,
            secret_key=settings.rocketmq_secret_key.get_secret_value(),
        )
    raise BusConfigurationError(f"unknown BUS_BACKEND={settings.bus_backend}")


async def _start_until_up(bus: MessageBus) -> None:
    attempt = 0
    while True:
        try:
            await bus.start()
        except Exception as exc:
            attempt += 1
            delay = _START_BACKOFF.delay(attempt)
            logger.warning(
                "bus %s not available at start-up (retrying in %.1f s): %r",
                bus.name,
                delay.total_seconds(),
                exc,
            )
            await asyncio.sleep(delay.total_seconds())
            continue
        if attempt:
            logger.info("bus %s started", bus.name)
        return


def _messaging_metrics(app: FastAPI) -> MessagingMetrics:
    # One per app, in its registry; kept across restarts of the app (tests),
    # since a registry refuses a second series of the same name.
    metrics: MessagingMetrics | None = getattr(app.state, "messaging_metrics", None)
    if metrics is None:
        metrics = MessagingMetrics(app.state.metrics.registry)
        app.state.messaging_metrics = metrics
    return metrics


def messaging_lifespan(
    make_bus: BusFactory,
    *,
    publisher: EventPublisher | None = None,
    consumers: Sequence[ConsumerSpec] = (),
    inbox: type[InboxMixin] | None = None,
    dead_letters: type[DeadLetterMixin] | None = None,
    relay_settings: RelaySettings | None = None,
    consumer_settings: ConsumerSettings | None = None,
) -> LifespanHook:
    """A create_app lifespan hook running the bus, the outbox relay and the consumers.

    ``publisher`` (its outbox model and commit signal) enables the relay;
    ``consumers`` need the service's ``inbox`` and ``dead_letters`` models.
    """
    if consumers and (inbox is None or dead_letters is None):
        raise ValueError("consumers need the inbox and dead_letters models")
    names = [spec.group.name for spec in consumers]
    if len(set(names)) != len(names):
        raise ValueError(f"a consumer group is listed twice: {names}")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database: Database = app.state.database
        metrics = _messaging_metrics(app)
        bus = make_bus()
        app.state.bus = bus
        app.state.readiness.add("bus", bus.ping)
        starter: asyncio.Task[None] | None = None
        relay: OutboxRelay | None = None
        runners: list[ConsumerRunner] = []
        app.state.outbox_relay = None
        app.state.consumer_runners = runners
        try:
            try:
                await bus.start()
            except Exception as exc:
                logger.warning("bus %s not available at start-up: %r", bus.name, exc)
                starter = asyncio.create_task(_start_until_up(bus), name="bus-start")

            if publisher is not None:
                relay = OutboxRelay(
                    database,
                    bus,
                    publisher.outbox,
                    settings=relay_settings,
                    signal=publisher.signal,
                    metrics=metrics,
                )
                relay.start()
                app.state.outbox_relay = relay

            for spec in consumers:
                assert inbox is not None
                assert dead_letters is not None
                runner = ConsumerRunner(
                    bus,
                    database,
                    spec.group,
                    spec.handler,
                    inbox=inbox,
                    dead_letters=dead_letters,
                    settings=consumer_settings,
                    metrics=metrics,
                )
                runner.start()
                runners.append(runner)

            yield
        finally:
            # Consumers first (they finish the message in hand), then the relay,
            # then the bus both of them use.
            await asyncio.gather(*(runner.stop() for runner in runners))
            if relay is not None:
                await relay.stop()
            if starter is not None:
                starter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starter
            await bus.close()

    return lifespan
