"""The EventSink of the running service: the transactional outbox of meshmart_common.messaging.

:class:`OutboxSink` writes each event as an outbox row in the caller's session
(so it commits or rolls back with the change); the relay that
``messaging_lifespan`` runs publishes committed rows to the bus, with the
order id as the message key and the event type as the tag.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.events import EventData
from meshmart_common.messaging.outbox import EventPublisher
from order_service.events.metrics import OrderMetrics
from order_service.repository.models import OutboxEvent

SOURCE = "/meshmart/order"
"""The CloudEvents ``source`` of every event order publishes."""


def order_publisher() -> EventPublisher:
    """The publisher writing into order's outbox table."""
    return EventPublisher(OutboxEvent, source=SOURCE)


def not_before(deliver_at: datetime) -> datetime:
    """``deliver_at`` rounded up to a whole second.

    The outbox keeps whole seconds on MySQL/MariaDB (a plain DATETIME), so a
    delayed message (the payment timeout at ``pay_by``) could otherwise fire up
    to a second early, while the customer may still pay.
    """
    if deliver_at.microsecond == 0:
        return deliver_at
    return deliver_at.replace(microsecond=0) + timedelta(seconds=1)


class OutboxSink:
    """An EventSink that publishes through ``publisher`` in the caller's transaction.

    With ``metrics``, the business counters count each event's change once the
    transaction commits (see events/metrics.py).
    """

    def __init__(self, publisher: EventPublisher, metrics: OrderMetrics | None = None) -> None:
        self.publisher = publisher
        self.metrics = metrics

    async def emit(
        self, session: AsyncSession, payload: EventData, deliver_at: datetime | None = None
    ) -> None:
        """Add ``payload`` to the outbox in ``session`` (keyed by its aggregate id)."""
        await self.publisher.publish(
            session,
            payload,
            key=payload.aggregate_key(),
            deliver_at=not_before(deliver_at) if deliver_at is not None else None,
        )
        if self.metrics is not None:
            self.metrics.count_after_commit(session, payload)
