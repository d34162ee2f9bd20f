"""Idempotent consumers: receive, handle once (inbox), retry with backoff, park dead letters.

A :class:`ConsumerRunner` serves one consumer group. For each message it

1. parses the CloudEvents envelope; a body that does not parse is parked as a
   dead letter at once (retrying cannot fix it);
2. in ONE database transaction inserts the inbox row (group, event id) and
   runs ``await handler(session, event)``. The inbox row is unique, so an
   event that was already handled fails at that insert and is just acked:
   a redelivery has no second effect;
3. acks on success. On failure it rolls back, records the failure in the
   dead-letter table (still "retrying") and makes the message visible again
   after an exponential backoff; at ``max_attempts`` (or at once for a
   :class:`PermanentEventError`) it parks the dead letter and acks, so an
   operator can list and replay it (see dead_letters.py).

Messages are handled one at a time per runner (order within a group is
roughly kept); a service runs one runner per group. Nothing a message does
stops the loop, and an unavailable bus is waited out with backoff.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import traceback
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common import tracing
from meshmart_common.db import Database
from meshmart_common.messaging.bus import MessageBus, ReceivedMessage
from meshmart_common.messaging.envelope import (
    REQUEST_ID_PROPERTY,
    CloudEvent,
    EventPayload,
    InvalidEnvelope,
    InvalidEvent,
)
from meshmart_common.messaging.metrics import BacklogCounter, MessagingMetrics
from meshmart_common.messaging.models import DeadLetterMixin, InboxMixin
from meshmart_common.messaging.settings import ConsumerSettings
from meshmart_common.messaging.topology import ConsumerGroupSpec
from meshmart_common.observability import bind_request_id, request_id_scope

logger = logging.getLogger("meshmart.messaging.consumer")

MAX_ERROR_CHARS = 16_000
_PRUNE_CHUNK = 1000
_BACKLOG_INTERVAL_SECONDS = 5.0

P = TypeVar("P", bound=EventPayload)


class PermanentEventError(Exception):
    """Raised by a handler when retrying cannot help: the event is parked at once."""


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    """What a handler gets: the envelope and where it came from."""

    envelope: CloudEvent
    consumer_group: str
    topic: str
    message_id: str
    key: str
    properties: Mapping[str, str] = field(default_factory=dict)
    delivery_attempt: int = 1
    replay: bool = False  # True when an operator replays a dead letter

    @property
    def id(self) -> str:
        """The CloudEvents id (unique per event, the inbox key)."""
        return self.envelope.id

    @property
    def type(self) -> str:
        """The event type (``order.created``)."""
        return self.envelope.type

    @property
    def subject(self) -> str | None:
        """The aggregate id."""
        return self.envelope.subject

    def payload(self, cls: builtins.type[P]) -> P:
        """The data as ``cls``; InvalidEvent (parked at once) when it does not fit."""
        return cls.from_event(self.envelope)


EventHandler = Callable[[AsyncSession, IncomingEvent], Awaitable[None]]
"""``await handler(session, event)``: apply the event's effect in ``session`` (never commit)."""

TypedHandler = Callable[[AsyncSession, P, IncomingEvent], Awaitable[None]]
"""A handler of one payload class, registered on an :class:`EventDispatcher`."""


class EventDispatcher:
    """An EventHandler that routes each event type to the handler of its payload class.

    ::

        handlers = EventDispatcher()

        @handlers.on(OrderCreated)
        async def reserve_stock(session, order: OrderCreated, event: IncomingEvent) -> None: ...

    An event of a type without a handler is an error (parked at once) unless
    ``ignore_unknown`` is set, as for a group subscribed to every tag that
    only cares about some.
    """

    def __init__(self, *, ignore_unknown: bool = False) -> None:
        self.ignore_unknown = ignore_unknown
        self._routes: dict[
            str, tuple[type[EventPayload], Callable[[AsyncSession, Any, IncomingEvent], Any]]
        ] = {}

    def on(self, payload: type[P]) -> Callable[[TypedHandler[P]], TypedHandler[P]]:
        """Decorator: handle events of ``payload``'s type with the decorated function."""

        def register(handler: TypedHandler[P]) -> TypedHandler[P]:
            self.add(payload, handler)
            return handler

        return register

    def add(self, payload: type[P], handler: TypedHandler[P]) -> None:
        """Handle events of ``payload``'s type with ``handler``."""
        event_type = getattr(payload, "event_type", None)
        if not isinstance(event_type, str):
            raise TypeError(f"{payload.__name__} declares no event_type")
        if event_type in self._routes:
            raise TypeError(f"event type {event_type!r} already has a handler")
        self._routes[event_type] = (payload, handler)

    @property
    def event_types(self) -> frozenset[str]:
        """The types with a handler (the tags a group needs)."""
        return frozenset(self._routes)

    async def __call__(self, session: AsyncSession, event: IncomingEvent) -> None:
        route = self._routes.get(event.type)
        if route is None:
            if self.ignore_unknown:
                return
            raise PermanentEventError(f"no handler for event type {event.type!r}")
        payload_cls, handler = route
        await handler(session, event.payload(payload_cls), event)


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    """A consumer group and its handler, as a service declares them."""

    group: ConsumerGroupSpec
    handler: EventHandler


class Outcome(StrEnum):
    """What became of one message."""

    HANDLED = "handled"
    DUPLICATE = "duplicate"
    RETRYING = "retrying"
    DEAD_LETTERED = "dead_lettered"


class AlreadyHandled(Exception):
    """The inbox already holds this event for this group."""


def _now() -> datetime:
    return datetime.now(UTC)


def describe_error(exc: BaseException) -> str:
    """``Type: message`` plus the traceback, cut to a storable size."""
    text = "".join(traceback.format_exception(exc)).strip()
    summary = f"{type(exc).__name__}: {exc}"
    full = f"{summary}\n\n{text}"
    return full if len(full) <= MAX_ERROR_CHARS else full[: MAX_ERROR_CHARS - 3] + "..."


async def handle_once(
    database: Database,
    inbox: type[InboxMixin],
    handler: EventHandler,
    event: IncomingEvent,
    *,
    on_success: Callable[[AsyncSession], Awaitable[None]] | None = None,
) -> None:
    """Run ``handler`` and record ``event`` in the inbox, in one transaction.

    Raises AlreadyHandled (nothing changed) when the group's inbox already has
    the event, and whatever the handler raises (rolled back). ``on_success``
    runs last in the same transaction (clearing a dead letter).
    """
    async with database.session() as session:
        # The inbox row goes first so that a duplicate fails before the handler
        # runs, and (on SQLite) so the transaction holds the write lock from its
        # first statement.
        session.add(
            inbox(
                consumer_group=event.consumer_group,
                event_id=event.id,
                event_type=event.type,
                handled_at=_now(),
            )
        )
        try:
            await session.flush()
        except IntegrityError:
            raise AlreadyHandled(event.id) from None
        await handler(session, event)
        if on_success is not None:
            await on_success(session)


class ConsumerRunner:
    """Receives one group's messages and handles them one by one until stopped."""

    def __init__(
        self,
        bus: MessageBus,
        database: Database,
        group: ConsumerGroupSpec,
        handler: EventHandler,
        *,
        inbox: type[InboxMixin],
        dead_letters: type[DeadLetterMixin],
        settings: ConsumerSettings | None = None,
        metrics: MessagingMetrics | None = None,
    ) -> None:
        self.bus = bus
        self.database = database
        self.group = group
        self.metrics = metrics or MessagingMetrics()
        self.metrics.declare_group(group)
        self.handler = handler
        self.inbox = inbox
        self.dead_letters = dead_letters
        self.settings = settings or ConsumerSettings()
        self._retry_backoff = self.settings.retry_backoff
        self._bus_backoff = self.settings.bus_backoff
        self._stopping = False
        self._receiving = False
        self._stop_event: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.bus_failures = 0

    # --- one message ---------------------------------------------------------------

    async def process(self, message: ReceivedMessage) -> Outcome:
        """Handle, retry or park ``message`` and settle it with the bus; never raises.

        All of it runs in a CONSUMER span whose parent is the producer's span
        (the trace context travels in the message properties).
        """
        with tracing.process_span(
            message, group=self.group.name, system=tracing.messaging_system(self.bus)
        ) as span:
            outcome = await self._process(message)
            tracing.record_outcome(span, outcome.value)
            return outcome

    async def _process(self, message: ReceivedMessage) -> Outcome:
        try:
            envelope = CloudEvent.from_json(message.body)
        except InvalidEnvelope as exc:
            bind_request_id(message.properties.get(REQUEST_ID_PROPERTY) or message.message_id)
            logger.error(
                "group %s: message %s is not a CloudEvent; parking it: %s",
                self.group.name,
                message.message_id,
                exc,
            )
            return await self._fail(message, None, exc, park=True)
        event = IncomingEvent(
            envelope=envelope,
            consumer_group=self.group.name,
            topic=message.topic,
            message_id=message.message_id,
            key=message.key,
            properties=message.properties,
            delivery_attempt=message.delivery_attempt,
        )
        # For the log lines of the handling (receive_and_process scopes it to this message).
        bind_request_id(message.properties.get(REQUEST_ID_PROPERTY) or event.id)
        self.metrics.record_received(self.group, envelope.time)
        # A failure of an earlier delivery left a "retrying" row; success clears it.
        clear = self._clear_failure(message) if message.delivery_attempt > 1 else None
        try:
            await handle_once(self.database, self.inbox, self.handler, event, on_success=clear)
        except AlreadyHandled:
            if clear is not None:
                await self._best_effort(self._clear_failure_now(message))
            await self._ack(message)
            return Outcome.DUPLICATE
        except Exception as exc:
            permanent = isinstance(exc, PermanentEventError | InvalidEvent)
            park = permanent or message.delivery_attempt >= self.settings.max_attempts
            log = logger.error if park else logger.warning
            log(
                "group %s: handling %s %s failed (delivery %d of %d%s): %r",
                self.group.name,
                event.type,
                event.id,
                message.delivery_attempt,
                self.settings.max_attempts,
                ", not retryable" if permanent else "",
                exc,
            )
            return await self._fail(message, envelope, exc, park=park)
        await self._ack(message)
        return Outcome.HANDLED

    async def _fail(
        self,
        message: ReceivedMessage,
        envelope: CloudEvent | None,
        exc: BaseException,
        *,
        park: bool,
    ) -> Outcome:
        tracing.record_failure(exc)
        recorded = await self._best_effort(self._record_failure(message, envelope, exc, park=park))
        if park:
            if recorded:
                await self._ack(message)
                return Outcome.DEAD_LETTERED
            # Not recorded (database down): keep the message on the bus; it comes
            # back after the invisible duration and is parked then.
            return Outcome.RETRYING
        delay = self._retry_backoff.delay(message.delivery_attempt)
        try:
            await self.bus.change_invisible_duration(self.group.name, message, delay)
        except Exception as bus_exc:
            # The message still returns once its invisible duration ends.
            logger.warning(
                "group %s: could not schedule the retry of %s: %r",
                self.group.name,
                message.message_id,
                bus_exc,
            )
        return Outcome.RETRYING

    async def _record_failure(
        self,
        message: ReceivedMessage,
        envelope: CloudEvent | None,
        exc: BaseException,
        *,
        park: bool,
    ) -> None:
        model = self.dead_letters
        now = _now()
        error = describe_error(exc)
        async with self.database.session() as session:
            row = await session.scalar(
                select(model)
                .where(
                    model.consumer_group == self.group.name,
                    model.message_id == message.message_id,
                )
                .with_for_update()
            )
            if row is None:
                session.add(
                    model(
                        consumer_group=self.group.name,
                        topic=message.topic,
                        message_id=message.message_id,
                        event_id=envelope.id if envelope is not None else None,
                        event_type=envelope.type if envelope is not None else message.tag,
                        message_key=message.key,
                        body=message.body,
                        properties=dict(message.properties),
                        error=error,
                        attempts=message.delivery_attempt,
                        first_failed_at=now,
                        last_failed_at=now,
                        parked_at=now if park else None,
                    )
                )
                return
            row.error = error
            row.attempts = max(row.attempts, message.delivery_attempt)
            row.last_failed_at = now
            if park and row.parked_at is None:
                row.parked_at = now

    def _clear_failure(self, message: ReceivedMessage) -> Callable[[AsyncSession], Awaitable[None]]:
        model = self.dead_letters

        async def clear(session: AsyncSession) -> None:
            await session.execute(
                delete(model)
                .where(
                    model.consumer_group == self.group.name,
                    model.message_id == message.message_id,
                )
                .execution_options(synchronize_session=False)
            )

        return clear

    async def _clear_failure_now(self, message: ReceivedMessage) -> None:
        async with self.database.session() as session:
            await self._clear_failure(message)(session)

    async def _ack(self, message: ReceivedMessage) -> None:
        try:
            await self.bus.ack(self.group.name, message)
        except Exception as exc:
            # The message will come back; the inbox turns that into a no-op.
            logger.warning(
                "group %s: ack of %s failed: %r", self.group.name, message.message_id, exc
            )

    async def _best_effort(self, work: Awaitable[None]) -> bool:
        try:
            await work
        except Exception:
            logger.exception("group %s: could not write a dead-letter record", self.group.name)
            return False
        return True

    # --- the loop --------------------------------------------------------------------

    async def receive_and_process(self) -> list[Outcome]:
        """One receive round: fetch a batch and process it (stops early when stopping)."""
        self._receiving = True
        try:
            messages = await self.bus.receive(
                self.group.name,
                self.group.topic,
                self.group.tags,
                max_messages=self.settings.batch_size,
                invisible_duration=self.settings.invisible_duration,
                wait=self.settings.wait,
            )
        finally:
            self._receiving = False
        if self.bus_failures:
            logger.info("group %s: receiving again", self.group.name)
            self.bus_failures = 0
        outcomes = []
        for message in messages:
            if self._stopping:
                break  # the rest come back after their invisible duration
            with request_id_scope():
                outcome = await self.process(message)
            self.metrics.record_outcome(self.group.name, outcome)
            outcomes.append(outcome)
        return outcomes

    async def refresh_backlog(self) -> None:
        """Set the group's backlog gauge, when the bus can count (the local bus can)."""
        if isinstance(self.bus, BacklogCounter):
            count = await self.bus.backlog(self.group.name, self.group.topic, self.group.tags)
            self.metrics.record_backlog(self.group.name, count)

    async def prune_inbox(self, *, now: datetime | None = None) -> int:
        """Delete this group's inbox rows older than ``inbox_retention``; return how many."""
        model = self.inbox
        cutoff = (now or _now()) - self.settings.inbox_retention
        deleted = 0
        while True:
            async with self.database.session() as session:
                ids = list(
                    await session.scalars(
                        select(model.id)
                        .where(model.consumer_group == self.group.name, model.handled_at < cutoff)
                        .order_by(model.id)
                        .limit(_PRUNE_CHUNK)
                    )
                )
                if ids:
                    await session.execute(
                        delete(model)
                        .where(model.id.in_(ids))
                        .execution_options(synchronize_session=False)
                    )
            deleted += len(ids)
            if len(ids) < _PRUNE_CHUNK:
                return deleted

    def start(self) -> None:
        """Run the consumer loop as a task of the running event loop."""
        if self._task is not None and not self._task.done():
            return
        self._stopping = False
        self._stop_event = asyncio.Event()
        self._task = asyncio.create_task(self.run(), name=f"consumer:{self.group.name}")

    async def stop(self, grace: float = 30.0) -> None:
        """Finish the message in hand, then stop; cancel after ``grace`` seconds."""
        self._stopping = True
        if self._stop_event is not None:
            self._stop_event.set()
        task, self._task = self._task, None
        if task is None:
            return
        if self._receiving:
            # Waiting for messages holds nothing: interrupt the long poll. A
            # batch claimed in that instant just comes back after its
            # invisible duration.
            task.cancel()
        try:
            await asyncio.wait_for(asyncio.shield(task), grace)
        except asyncio.CancelledError:
            if not task.cancelled():
                raise
        except TimeoutError:
            logger.warning("consumer %s did not stop within %.1f s", self.group.name, grace)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def run(self) -> None:
        """Receive and process until stopped; back off while the bus is unavailable."""
        if self._stop_event is None:
            self._stop_event = asyncio.Event()
        loop = asyncio.get_running_loop()
        next_prune = loop.time() + self.settings.prune_interval.total_seconds()
        next_backlog = loop.time()
        while not self._stopping:
            try:
                await self.receive_and_process()
            except asyncio.CancelledError:
                if self._stopping:
                    return
                raise
            except Exception as exc:
                self.bus_failures += 1
                delay = self._bus_backoff.delay(self.bus_failures)
                logger.warning(
                    "group %s: receive failed (failure %d, retrying in %.2f s): %r",
                    self.group.name,
                    self.bus_failures,
                    delay.total_seconds(),
                    exc,
                )
                await self._sleep(delay.total_seconds())
                continue
            if loop.time() >= next_prune:
                next_prune = loop.time() + self.settings.prune_interval.total_seconds()
                try:
                    await self.prune_inbox()
                except Exception:
                    logger.exception("group %s: inbox prune failed", self.group.name)
            if loop.time() >= next_backlog:
                next_backlog = loop.time() + _BACKLOG_INTERVAL_SECONDS
                try:
                    await self.refresh_backlog()
                except Exception as exc:  # a metric must never stop the consumer
                    logger.debug("group %s: backlog not counted: %r", self.group.name, exc)

    async def _sleep(self, seconds: float) -> None:
        assert self._stop_event is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), seconds)
