"""The data service's consumers: every domain event into the analytics tables.

Four consumer groups, ``data-all-<topic>``, read every tag of user-events,
product-events, order-events and trade-events (one group per topic, see
docs/messaging.md); a fifth, ``data-audit-events``, reads audit.recorded from
audit-events into the audit log. Each runs :func:`consume`, which the consumer
runner calls inside the transaction that also writes the event's inbox row; a
redelivered event therefore changes nothing, and ingest is idempotent on its
own as well.

- a known type (``meshmart_common.events.EVENT_TYPES``) is parsed into its
  payload model and ingested;
- an unknown type (a producer ahead of this service) is kept in the raw
  ``events`` table only: it is never dead-lettered just for being new;
- a known type whose data does not fit its model cannot succeed by retrying:
  :class:`PermanentEventError` parks it as a dead letter at once, for an
  operator to replay (``/api/v1/admin/dead-letters``) once fixed.

The order service's payment-timeout DELAY topic is not read: it is a timer,
not a domain event; its outcome arrives as order.cancelled.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from data_service.domain.ingest import ingest, record_unknown
from meshmart_common.db import utc_now
from meshmart_common.events import EVENT_TYPES, EventData
from meshmart_common.messaging.consumer import (
    ConsumerSpec,
    IncomingEvent,
    PermanentEventError,
)
from meshmart_common.messaging.topology import (
    AUDIT_EVENTS,
    ORDER_EVENTS,
    PRODUCT_EVENTS,
    TRADE_EVENTS,
    USER_EVENTS,
    ConsumerGroupSpec,
    consumer_group,
)

logger = logging.getLogger("data.events")

TOPICS: tuple[str, ...] = (USER_EVENTS, PRODUCT_EVENTS, ORDER_EVENTS, TRADE_EVENTS)
"""The domain topics the data service reads, every tag of each."""

CONSUMER_GROUPS: tuple[ConsumerGroupSpec, ...] = (
    *(consumer_group(f"data-all-{topic}") for topic in TOPICS),
    consumer_group(f"data-{AUDIT_EVENTS}"),
)
"""The data service's consumer groups, one per topic (declared in the topology)."""


class Envelope(Protocol):
    """The parts of a received CloudEvents envelope that ingest needs."""

    @property
    def id(self) -> str:
        """The event id (unique per event, stable across redeliveries)."""
        ...

    @property
    def type(self) -> str:
        """The event type, e.g. ``order.paid``."""
        ...

    @property
    def time(self) -> datetime | None:
        """When the event happened (CloudEvents ``time``)."""
        ...

    @property
    def subject(self) -> str | None:
        """The aggregate id (CloudEvents ``subject``), if the producer set one."""
        ...

    @property
    def data(self) -> Any:
        """The payload: an EventData model or its JSON object."""
        ...


def parse_data(event_type: str, data: Any) -> EventData:
    """The payload model of ``data``; ValueError for an unknown type or an invalid payload."""
    model = EVENT_TYPES.get(event_type)
    if model is None:
        raise ValueError(f"unknown event type {event_type!r}")
    if isinstance(data, model):
        return data
    if isinstance(data, Mapping):
        return model.model_validate(dict(data))
    raise ValueError(f"payload of {event_type!r} must be a JSON object")


async def handle_event(session: AsyncSession, event: Envelope) -> None:
    """Ingest one received event into the analytics tables (a replayed id changes nothing).

    Unknown types go to the raw log only; PermanentEventError when a known
    type's data does not fit its payload model.
    """
    occurred = event.time if event.time is not None else utc_now()
    if event.type not in EVENT_TYPES:
        if isinstance(event.data, Mapping):
            data: Mapping[str, Any] = event.data
        elif isinstance(event.data, EventData):
            data = event.data.model_dump(mode="json")
        else:
            data = {"value": event.data}
        recorded = await record_unknown(
            session, event.type, event.id, occurred, event.subject or event.id, data
        )
        if recorded:
            logger.info(
                "event %s has a type this service does not know (%s): kept in the raw log only",
                event.id,
                event.type,
            )
        return
    try:
        payload = parse_data(event.type, event.data)
    except ValueError as exc:
        # Retrying cannot make this data valid: park it now for an operator.
        raise PermanentEventError(f"event {event.id} ({event.type}): {exc}") from exc
    await ingest(session, event.type, event.id, occurred, payload)


async def consume(session: AsyncSession, event: IncomingEvent) -> None:
    """The consumer runner's handler of every data group: ingest the received envelope."""
    await handle_event(session, event.envelope)


CONSUMERS: tuple[ConsumerSpec, ...] = tuple(
    ConsumerSpec(group=group, handler=consume) for group in CONSUMER_GROUPS
)
"""What the messaging lifespan runs and the dead-letter admin routes replay."""
