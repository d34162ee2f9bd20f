"""Transactional outbox: events are rows written with the change, published after commit.

A domain function calls :meth:`EventPublisher.publish` with the request's
session; the event row commits or rolls back together with the change (the
publisher never commits). An :class:`OutboxRelay` task in every service
process then publishes committed rows in id order, marks them sent and, while
the bus is away, retries with backoff; rows survive restarts, so nothing is
lost between commit and publish.

Several replicas may run a relay on one database: a relay claims a batch with
a conditional UPDATE (``claimed_by``/``claimed_until``) before publishing it,
so two relays do not publish the same row; a relay that dies mid-batch leaves
a claim that expires after ``claim_timeout``. Delivery stays at least once (a
crash between publish and "mark sent" republishes), which the consumers'
inbox absorbs. Batches of different replicas may interleave, so the order
across the outbox is only "roughly by id".

Sent rows are kept for ``RelaySettings.retention`` (what was published, and
its bus message id, stays visible for a while) and then pruned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, event, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from meshmart_common import tracing
from meshmart_common.db import Database
from meshmart_common.messaging.bus import MessageBus, OutgoingMessage
from meshmart_common.messaging.envelope import REQUEST_ID_PROPERTY, CloudEvent, EventPayload
from meshmart_common.messaging.metrics import MessagingMetrics
from meshmart_common.messaging.models import OutboxMixin
from meshmart_common.messaging.settings import RelaySettings
from meshmart_common.messaging.topology import TOPICS, TopicKind
from meshmart_common.observability import current_request_id

logger = logging.getLogger("meshmart.messaging.outbox")

_PRUNE_CHUNK = 1000
_SIGNALS_INFO_KEY = "meshmart.outbox_signals"
_STATS_INTERVAL_SECONDS = 1.0


def _now() -> datetime:
    return datetime.now(UTC)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class OutboxSignal:
    """Tells the relay that a transaction with new outbox rows has committed.

    Not bound to an event loop (unlike asyncio.Event), so one publisher can
    outlive the loops of successive app start-ups (tests).
    """

    def __init__(self) -> None:
        self._pending = False
        self._waiters: set[asyncio.Future[None]] = set()

    @property
    def pending(self) -> bool:
        """True when notified since the last wait returned."""
        return self._pending

    def notify(self) -> None:
        """Wake the waiting relay (or the next wait)."""
        self._pending = True
        for waiter in tuple(self._waiters):
            # A waiter of a loop that has closed meanwhile has nobody to wake.
            with contextlib.suppress(RuntimeError):
                waiter.get_loop().call_soon_threadsafe(_wake, waiter)

    async def wait(self, seconds: float) -> bool:
        """Wait until notified or ``seconds`` pass; True when notified."""
        if not self._pending:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.add(waiter)
            try:
                await asyncio.wait({waiter}, timeout=seconds)
            finally:
                self._waiters.discard(waiter)
                waiter.cancel()
        notified = self._pending
        self._pending = False
        return notified


_TOPIC_KINDS: dict[str, TopicKind] = {topic.name: topic.kind for topic in TOPICS}


class EventPublisher:
    """Writes events into a service's outbox, inside the caller's transaction.

    ``source`` is the CloudEvents source of every event (``/meshmart/order``).
    ``context_properties`` is called at each publish for message properties
    to store with the row; by default the current W3C trace context
    (``traceparent``, ``tracestate``; nothing while tracing is off), so the
    trace goes on through the outbox. ``None`` stores none.
    """

    def __init__(
        self,
        outbox: type[OutboxMixin],
        *,
        source: str,
        context_properties: Callable[[], Mapping[str, str]] | None = tracing.context_properties,
    ) -> None:
        self.outbox = outbox
        self.source = source
        self.context_properties = context_properties
        self.signal = OutboxSignal()

    async def publish(
        self,
        session: AsyncSession,
        payload: EventPayload,
        *,
        key: str | int,
        deliver_at: datetime | None = None,
        properties: Mapping[str, str] | None = None,
        event_id: str | None = None,
    ) -> CloudEvent:
        """Add ``payload`` as an event about aggregate ``key`` to the outbox; return its envelope.

        Nothing is committed or sent here: the row commits with the session's
        transaction and the relay publishes it afterwards. ``deliver_at``
        (timezone-aware) delays delivery; NORMAL topics refuse it.
        """
        key = str(key)
        if not key:
            raise ValueError("an event needs an aggregate key")
        if deliver_at is not None and deliver_at.tzinfo is None:
            raise ValueError("deliver_at must be timezone-aware")
        _check_topic_kind(payload.topic, deliver_at)
        envelope = payload.to_event(source=self.source, subject=key, event_id=event_id)
        merged: dict[str, str] = {}
        if self.context_properties is not None:
            merged.update(self.context_properties())
        request_id = current_request_id()
        if request_id:
            merged[REQUEST_ID_PROPERTY] = request_id
        if properties:
            merged.update(properties)
        session.add(
            self.outbox(
                event_id=envelope.id,
                topic=payload.topic,
                event_type=envelope.type,
                message_key=key,
                body=envelope.to_json().decode(),
                properties=merged,
                deliver_at=deliver_at,
                created_at=envelope.time,
            )
        )
        self._notify_after_commit(session.sync_session)
        return envelope

    def _notify_after_commit(self, session: Session) -> None:
        registered: set[int] = session.info.setdefault(_SIGNALS_INFO_KEY, set())
        if id(self.signal) in registered:
            return
        registered.add(id(self.signal))
        signal = self.signal

        def after_commit(_session: Session) -> None:
            signal.notify()

        # Per-session listener: it wakes this publisher's relay right after the
        # commit instead of at its next poll, and a rollback wakes nobody.
        event.listen(session, "after_commit", after_commit)


def _check_topic_kind(topic: str, deliver_at: datetime | None) -> None:
    # RocketMQ 5 refuses a delayed message on a NORMAL topic; fail here, in the
    # request, rather than in the relay, where the row would block the outbox.
    if _TOPIC_KINDS.get(topic) is TopicKind.NORMAL and deliver_at is not None:
        raise ValueError(f"topic {topic} is NORMAL: it takes no delayed messages")


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """The relay's backlog: unsent rows and how long the oldest has waited."""

    backlog: int
    oldest_unsent_age: timedelta | None


class OutboxRelay:
    """Publishes committed outbox rows to the bus (one background task per process)."""

    def __init__(
        self,
        database: Database,
        bus: MessageBus,
        outbox: type[OutboxMixin],
        *,
        settings: RelaySettings | None = None,
        signal: OutboxSignal | None = None,
        metrics: MessagingMetrics | None = None,
    ) -> None:
        self.database = database
        self.bus = bus
        self.outbox = outbox
        self.metrics = metrics or MessagingMetrics()
        self.settings = settings or RelaySettings()
        self.signal = signal or OutboxSignal()
        self.relay_id = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._backoff = self.settings.backoff
        self._stopping = False
        self._stop_event: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.consecutive_failures = 0

    # --- one round ---------------------------------------------------------------

    async def publish_batch(self) -> int:
        """Claim up to ``batch_size`` unsent rows, publish them in id order, mark them sent.

        Returns how many were published. On a publish error the rows published
        so far are marked sent, the rest are released, and the error is raised.
        """
        rows = await self._claim()
        if not rows:
            return 0
        sent: list[dict[str, Any]] = []
        failure: Exception | None = None
        for row in rows:
            if self._stopping:
                break  # released below; the next start picks them up
            try:
                outgoing = OutgoingMessage(
                    topic=row.topic,
                    tag=row.event_type,
                    key=row.message_key,
                    body=row.body.encode(),
                    properties=dict(row.properties or {}),
                    deliver_at=row.deliver_at,
                )
                # A PRODUCER span below the request that wrote the row (its
                # context is in the stored properties); the message carries
                # the span's own context to the consumers.
                with tracing.send_span(
                    outgoing, system=tracing.messaging_system(self.bus), event_id=row.event_id
                ) as send:
                    message_id = await self.bus.publish(send.message)
                    send.sent(message_id)
            except Exception as exc:
                failure = exc
                break
            sent.append(
                {
                    "id": row.id,
                    "sent_at": _now(),
                    "message_id": message_id,
                    "claimed_by": None,
                    "claimed_until": None,
                }
            )
        self.metrics.outbox_published.inc(len(sent))
        published_ids = {entry["id"] for entry in sent}
        await self._finish(sent, [row.id for row in rows if row.id not in published_ids])
        if failure is not None:
            raise failure
        return len(sent)

    async def publish_pending(self) -> int:
        """Publish batches until no claimable row is left; return how many were published."""
        total = 0
        while True:
            published = await self.publish_batch()
            total += published
            if published < self.settings.batch_size:
                return total

    async def _claim(self) -> list[OutboxMixin]:
        model = self.outbox
        now = _now()
        claimable = and_(
            model.sent_at.is_(None),
            or_(model.claimed_until.is_(None), model.claimed_until < now),
        )
        async with self.database.session() as session:
            ids = list(
                await session.scalars(
                    select(model.id)
                    .where(claimable)
                    .order_by(model.id)
                    .limit(self.settings.batch_size)
                )
            )
            if not ids:
                return []
            # The condition is evaluated again by the UPDATE against the latest
            # committed rows, so of two relays that picked the same ids only one
            # gets each row.
            await session.execute(
                update(model)
                .where(model.id.in_(ids), claimable)
                .values(claimed_by=self.relay_id, claimed_until=now + self.settings.claim_timeout)
                .execution_options(synchronize_session=False)
            )
            rows = await session.scalars(
                select(model)
                .where(
                    model.id.in_(ids),
                    model.claimed_by == self.relay_id,
                    model.sent_at.is_(None),
                )
                .order_by(model.id)
            )
            return list(rows)

    async def _finish(self, sent: list[dict[str, Any]], unpublished: list[int]) -> None:
        if not sent and not unpublished:
            return
        model = self.outbox
        async with self.database.session() as session:
            if sent:
                await session.execute(update(model), sent)
            if unpublished:
                # Released now rather than when the claim expires, so the next
                # attempt can take them at once. By primary key: on InnoDB an
                # UPDATE locks every row it scans, and a scan would collide
                # with other relays' claims (deadlocks).
                await session.execute(
                    update(model)
                    .where(model.id.in_(unpublished), model.claimed_by == self.relay_id)
                    .values(claimed_by=None, claimed_until=None)
                    .execution_options(synchronize_session=False)
                )

    # --- maintenance and metrics -------------------------------------------------

    async def prune(self, *, now: datetime | None = None) -> int:
        """Delete rows sent more than ``retention`` ago; return how many."""
        model = self.outbox
        cutoff = (now or _now()) - self.settings.retention
        deleted = 0
        while True:
            async with self.database.session() as session:
                # Ids first, then DELETE by id: MySQL allows no LIMIT in an IN
                # subquery, and small chunks keep each transaction short.
                ids = list(
                    await session.scalars(
                        select(model.id)
                        .where(model.sent_at.is_not(None), model.sent_at <= cutoff)
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

    async def stats(self) -> OutboxStats:
        """Unsent rows and the age of the oldest (for metrics and alerts)."""
        model = self.outbox
        # The primary, not a replica: a lagging replica would report sent rows.
        async with self.database.session() as session:
            result = await session.execute(
                select(func.count(model.id), func.min(model.created_at)).where(
                    model.sent_at.is_(None)
                )
            )
            count, oldest = result.one()
        age = max(timedelta(0), _now() - oldest) if oldest is not None else None
        return OutboxStats(backlog=int(count), oldest_unsent_age=age)

    async def refresh_metrics(self) -> OutboxStats:
        """Set the outbox_backlog and outbox_oldest_unsent_age_seconds gauges from :meth:`stats`."""
        stats = await self.stats()
        self.metrics.record_outbox(stats.backlog, stats.oldest_unsent_age)
        return stats

    # --- the background task -------------------------------------------------------

    def start(self) -> None:
        """Run the relay loop as a task of the running event loop."""
        if self._task is not None and not self._task.done():
            return
        self._stopping = False
        self._stop_event = asyncio.Event()
        self._task = asyncio.create_task(self.run(), name=f"outbox-relay:{self.relay_id}")

    async def stop(self, grace: float = 10.0) -> None:
        """Stop after the row being published; cancel when that takes over ``grace`` s."""
        self._stopping = True
        if self._stop_event is not None:
            self._stop_event.set()
        self.signal.notify()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), grace)
        except TimeoutError:
            logger.warning("outbox relay did not stop within %.1f s; cancelling it", grace)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def run(self) -> None:
        """Publish until stopped: after each commit signal, else every ``poll_interval``."""
        if self._stop_event is None:
            self._stop_event = asyncio.Event()
        loop = asyncio.get_running_loop()
        next_prune = loop.time()
        next_stats = loop.time()
        while not self._stopping:
            if loop.time() >= next_stats:
                # Each round at most once a second: one indexed COUNT on the outbox.
                next_stats = loop.time() + _STATS_INTERVAL_SECONDS
                try:
                    await self.refresh_metrics()
                except Exception as exc:  # a metric must never stop the relay
                    logger.debug("outbox stats not read: %r", exc)
            try:
                published = await self.publish_batch()
            except Exception as exc:
                self.consecutive_failures += 1
                delay = self._backoff.delay(self.consecutive_failures)
                logger.warning(
                    "outbox relay could not publish (failure %d, retrying in %.2f s): %r",
                    self.consecutive_failures,
                    delay.total_seconds(),
                    exc,
                )
                await self._sleep(delay.total_seconds())
                continue
            if self.consecutive_failures:
                logger.info("outbox relay publishing again")
                self.consecutive_failures = 0
            if published >= self.settings.batch_size:
                continue  # more rows are likely waiting
            if loop.time() >= next_prune:
                next_prune = loop.time() + self.settings.prune_interval.total_seconds()
                try:
                    await self.prune()
                except Exception:
                    logger.exception("outbox prune failed")
            await self.signal.wait(self.settings.poll_interval.total_seconds())

    async def _sleep(self, seconds: float) -> None:
        assert self._stop_event is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), seconds)
