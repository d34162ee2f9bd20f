"""The audit log: entries from audit.recorded events, listed for admins newest first.

Every service publishes its security-relevant actions (logins, password
changes, admin changes) as audit.recorded on the audit-events topic; the
``data-audit-events`` consumer stores each event once (:func:`record_entry`,
inside the consumer's inbox transaction), and ``GET /api/v1/audit`` lists them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from data_service.domain.times import as_utc
from data_service.repository.audit import AuditFilter, AuditRepository
from data_service.repository.models import AuditEntry
from meshmart_common.errors import ValidationFailed
from meshmart_common.events import AuditOutcome, AuditRecorded

MAX_ACTOR_ID = 2**63 - 1


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Filters of the audit list; every one optional.

    ``actor`` is an account id (digits) or an email (any case); ``action`` is
    an exact action, or a prefix when it ends with a dot (``auth.``); the time
    range is ``[start, end)``.
    """

    actor: str | None = None
    action: str | None = None
    outcome: AuditOutcome | None = None
    start: datetime | None = None
    end: datetime | None = None


def _query_error(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"{field}: {message}.", errors=[{"field": field, "location": "query", "message": message}]
    )


def _filter(query: AuditQuery) -> AuditFilter:
    if query.start is not None and query.end is not None and query.end < query.start:
        raise _query_error("to", "must not be before from")
    actor_id: int | None = None
    actor_email: str | None = None
    if query.actor is not None:
        actor = query.actor.strip()
        if actor.isascii() and actor.isdigit():
            actor_id = int(actor)
            if actor_id > MAX_ACTOR_ID:
                raise _query_error("actor", "is not a known account id")
        else:
            actor_email = actor.lower()
    action = query.action
    prefix = action is not None and action.endswith(".")
    return AuditFilter(
        actor_id=actor_id,
        actor_email=actor_email,
        action=None if prefix else action,
        action_prefix=action if prefix else None,
        outcome=query.outcome.value if query.outcome is not None else None,
        start=query.start,
        end=query.end,
    )


class AuditLog:
    """Reads the audit log."""

    def __init__(self, session: AsyncSession) -> None:
        self.entries = AuditRepository(session)

    async def search(
        self, query: AuditQuery, *, offset: int, limit: int
    ) -> tuple[Sequence[AuditEntry], int]:
        """One page of entries matching ``query``, newest first, and the number matching.

        ValidationFailed when ``end`` lies before ``start``.
        """
        return await self.entries.list(_filter(query), offset=offset, limit=limit)


async def record_entry(session: AsyncSession, event_id: str, entry: AuditRecorded) -> bool:
    """Store the audit entry of event ``event_id``; False when it is stored already."""
    return await AuditRepository(session).add(
        {
            "event_id": event_id,
            "occurred_at": as_utc(entry.occurred_at),
            "service": entry.service,
            "action": entry.action,
            "outcome": entry.outcome.value,
            "actor_id": entry.actor_id,
            "actor_email": entry.actor_email.lower() if entry.actor_email is not None else None,
            "actor_role": entry.actor_role,
            "target_type": entry.target_type,
            "target_id": entry.target_id,
            "request_id": entry.request_id,
            "client_ip": entry.client_ip,
            "details": dict(entry.details),
        }
    )
