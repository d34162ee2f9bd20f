"""Prometheus metrics of the outbox relay and the consumer runners.

``messaging_lifespan`` makes one :class:`MessagingMetrics` per app, in the
app's registry (``app.state.metrics.registry``), and hands it to the relay and
to every runner. Components built without one get an unregistered instance:
they count, and nobody scrapes it.

Series (labels are consumer group names from the topology: a bounded set):

- ``outbox_published_total``: messages this process's relay handed to the bus;
- ``outbox_backlog``, ``outbox_oldest_unsent_age_seconds``: unsent rows of the
  service's outbox and how long the oldest has waited (0 when none). Every
  replica reads the same table, so aggregate them with ``max``, not ``sum``;
- ``consumer_messages_handled_total{group}``: events whose handler committed;
- ``consumer_messages_duplicate_total{group}``: redeliveries the inbox absorbed;
- ``consumer_messages_failed_total{group}``: deliveries whose handling failed
  (each retry counts; a message that is not a CloudEvent counts too);
- ``consumer_messages_dead_lettered_total{group}``: messages parked as dead letters;
- ``consumer_lag_seconds{group}``: now minus the CloudEvents ``time`` of the
  last message received, i.e. how far behind the group is. Not reported for
  groups of a DELAY topic, whose events are meant to arrive late;
- ``consumer_backlog{group}``: messages of the group not yet acked (due ones
  only), for buses that can count them (:class:`BacklogCounter`: the local
  bus; RocketMQ's SimpleConsumer API cannot, so use the broker's own
  consumer-lag metrics there).

Counters are per process; Prometheus sums them across replicas.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from prometheus_client import CollectorRegistry, Counter, Gauge

from meshmart_common.messaging.topology import TOPICS, ConsumerGroupSpec, TopicKind

_DELAY_TOPICS = frozenset(topic.name for topic in TOPICS if topic.kind is TopicKind.DELAY)


@runtime_checkable
class BacklogCounter(Protocol):
    """A bus that can tell how many messages a group has not acked yet."""

    async def backlog(self, group: str, topic: str, tags: Collection[str]) -> int:
        """Messages of ``topic`` with one of ``tags`` that ``group`` has not acked
        and that are due (delayed ones count from their delivery time)."""
        ...


class MessagingMetrics:
    """The outbox and consumer series of one app (``registry=None``: not exported)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.outbox_published = Counter(
            "outbox_published",
            "Outbox messages this process's relay published to the bus.",
            registry=registry,
        )
        self.outbox_backlog = Gauge(
            "outbox_backlog",
            "Outbox rows not yet published (the whole table, same on every replica).",
            registry=registry,
        )
        self.outbox_oldest_unsent_age = Gauge(
            "outbox_oldest_unsent_age_seconds",
            "How long the oldest unpublished outbox row has waited (0 when none).",
            registry=registry,
        )
        self.handled = Counter(
            "consumer_messages_handled",
            "Events handled (handler and inbox row committed), by consumer group.",
            ["group"],
            registry=registry,
        )
        self.duplicates = Counter(
            "consumer_messages_duplicate",
            "Redelivered events the inbox recognised and skipped, by consumer group.",
            ["group"],
            registry=registry,
        )
        self.failed = Counter(
            "consumer_messages_failed",
            "Deliveries whose handling failed (retried or parked), by consumer group.",
            ["group"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "consumer_messages_dead_lettered",
            "Messages parked as dead letters, by consumer group.",
            ["group"],
            registry=registry,
        )
        self.lag = Gauge(
            "consumer_lag_seconds",
            "Age of the last message received (now - event time), by consumer group.",
            ["group"],
            registry=registry,
        )
        self.backlog = Gauge(
            "consumer_backlog",
            "Due messages not yet acked by the group (buses that can count them).",
            ["group"],
            registry=registry,
        )

    # --- outbox ------------------------------------------------------------------

    def record_outbox(self, backlog: int, oldest_unsent_age: timedelta | None) -> None:
        """Set the outbox gauges from the relay's latest look at its table."""
        self.outbox_backlog.set(backlog)
        age = oldest_unsent_age.total_seconds() if oldest_unsent_age is not None else 0.0
        self.outbox_oldest_unsent_age.set(age)

    # --- consumers ---------------------------------------------------------------

    def declare_group(self, group: ConsumerGroupSpec) -> None:
        """Show the group's counters at 0 before its first message."""
        for counter in (self.handled, self.duplicates, self.failed, self.dead_lettered):
            counter.labels(group.name)

    def record_outcome(self, group: str, outcome: str) -> None:
        """Count what became of one message (a consumer ``Outcome``)."""
        # Outcome values, not the enum: consumer.py imports this module.
        if outcome == "handled":
            self.handled.labels(group).inc()
        elif outcome == "duplicate":
            self.duplicates.labels(group).inc()
        elif outcome == "retrying":
            self.failed.labels(group).inc()
        elif outcome == "dead_lettered":
            self.failed.labels(group).inc()
            self.dead_lettered.labels(group).inc()

    def record_received(
        self, group: ConsumerGroupSpec, event_time: datetime, *, now: datetime | None = None
    ) -> None:
        """Set the group's lag from the event time of a message it just received."""
        if group.topic in _DELAY_TOPICS:
            return
        lag = ((now or datetime.now(UTC)) - event_time).total_seconds()
        self.lag.labels(group.name).set(max(lag, 0.0))

    def record_backlog(self, group: str, backlog: int) -> None:
        """Set the group's backlog gauge."""
        self.backlog.labels(group).set(backlog)
