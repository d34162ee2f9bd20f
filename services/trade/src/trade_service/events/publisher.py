"""Trade's events go out through its outbox, in the transaction of the change they describe."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.events import EventData
from meshmart_common.messaging.envelope import CloudEvent
from meshmart_common.messaging.outbox import EventPublisher
from trade_service.repository.models import OutboxEvent

SOURCE = "/meshmart/trade"
"""The CloudEvents ``source`` of every event trade publishes."""


def new_publisher() -> EventPublisher:
    """A publisher writing into trade's outbox (one per app: its relay waits on its signal)."""
    return EventPublisher(OutboxEvent, source=SOURCE)


async def publish_all(
    publisher: EventPublisher, session: AsyncSession, payloads: Iterable[EventData]
) -> list[CloudEvent]:
    """Add each payload to the outbox in ``session``'s transaction, keyed by its aggregate id.

    Nothing is sent here: the rows commit (or roll back) with the caller's
    transaction, and the relay publishes them after the commit.
    """
    return [
        await publisher.publish(session, payload, key=payload.aggregate_key())
        for payload in payloads
    ]
