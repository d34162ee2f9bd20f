"""Writes and reads of the audit log (``audit_entries``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from data_service.repository.models import AuditEntry
from meshmart_common.db import insert_if_new


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Which entries to list; every criterion optional (None: any)."""

    actor_id: int | None = None
    actor_email: str | None = None
    action: str | None = None
    action_prefix: str | None = None
    outcome: str | None = None
    start: datetime | None = None
    end: datetime | None = None


class AuditRepository:
    """The audit log table in one session (flushes, never commits)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, values: Mapping[str, Any]) -> bool:
        """Store one entry; False (nothing written) when its event id is already stored."""
        return await insert_if_new(self.session, cast(Table, AuditEntry.__table__), values)

    async def list(
        self, where: AuditFilter, *, offset: int, limit: int
    ) -> tuple[Sequence[AuditEntry], int]:
        """One page of matching entries, newest first, and how many match in all."""
        conditions = _conditions(where)
        total = await self.session.scalar(
            select(func.count()).select_from(AuditEntry).where(*conditions)
        )
        rows = await self.session.scalars(
            select(AuditEntry)
            .where(*conditions)
            .order_by(AuditEntry.occurred_at.desc(), AuditEntry.id.desc())
            .offset(offset)
            .limit(limit)
        )
        return rows.all(), int(total or 0)


def _conditions(where: AuditFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if where.actor_id is not None:
        conditions.append(AuditEntry.actor_id == where.actor_id)
    if where.actor_email is not None:
        conditions.append(AuditEntry.actor_email == where.actor_email)
    if where.action is not None:
        conditions.append(AuditEntry.action == where.action)
    if where.action_prefix is not None:
        # autoescape: "_" (in action names) and "%" are LIKE wildcards otherwise.
        conditions.append(AuditEntry.action.startswith(where.action_prefix, autoescape=True))
    if where.outcome is not None:
        conditions.append(AuditEntry.outcome == where.outcome)
    if where.start is not None:
        conditions.append(AuditEntry.occurred_at >= where.start)
    if where.end is not None:
        conditions.append(AuditEntry.occurred_at < where.end)
    return conditions
