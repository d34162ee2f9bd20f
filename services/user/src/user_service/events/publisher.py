"""The user service's events: user.registered and audit entries, written to the outbox.

The service consumes nothing; it only publishes. Events are rows of
``outbox_events`` added in the caller's transaction (the registration's
request session, or the seeder's session), so an account and its event
commit or roll back together; the outbox relay of the running service
publishes them afterwards.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.audit import AuditActor
from meshmart_common.events import AuditRecorded, UserRegistered
from meshmart_common.messaging.envelope import CloudEvent
from meshmart_common.messaging.outbox import EventPublisher
from user_service.repository.models import OutboxEvent, User

SOURCE = "/meshmart/user"
"""CloudEvents ``source`` of every event the user service emits."""


def user_event_publisher() -> EventPublisher:
    """A publisher into the user service's outbox (one per app; the seeder makes its own)."""
    return EventPublisher(OutboxEvent, source=SOURCE)


async def publish_user_registered(
    publisher: EventPublisher, session: AsyncSession, user: User
) -> CloudEvent:
    """Add user.registered for the (flushed) ``user`` to ``session``'s transaction."""
    payload = UserRegistered(user_id=user.id, email=user.email, registered_at=user.created_at)
    return await publisher.publish(session, payload, key=payload.aggregate_key())


async def publish_audit_entry(
    publisher: EventPublisher, session: AsyncSession, entry: AuditRecorded
) -> CloudEvent:
    """Add an audit.recorded entry to ``session``'s transaction (it commits with the action)."""
    return await publisher.publish(session, entry, key=entry.aggregate_key())


def audit_actor(user: User) -> AuditActor:
    """``user`` as the actor of an audit entry."""
    return AuditActor(user_id=user.id, email=user.email, role=user.role.value)
