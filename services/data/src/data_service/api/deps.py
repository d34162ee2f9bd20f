"""Dependencies of the data API: the stats and the audit log on the read session, problems."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends

from data_service.domain.audit import AuditLog
from data_service.domain.stats import StatsService
from meshmart_common.db import ReadSessionDep
from meshmart_common.errors import problem_responses


async def _stats(session: ReadSessionDep) -> StatsService:
    return StatsService(session)


StatsDep = Annotated[StatsService, Depends(_stats)]
"""Stats on the read-only session (the replica when one is configured)."""


async def _audit_log(session: ReadSessionDep) -> AuditLog:
    return AuditLog(session)


AuditLogDep = Annotated[AuditLog, Depends(_audit_log)]
"""The audit log on the read-only session."""

_PROBLEM_TEXT = {
    401: "No valid bearer token",
    403: "The caller is not an admin",
    422: "Invalid input (field errors in `errors`)",
}

ADMIN_PROBLEMS: dict[int | str, dict[str, Any]] = problem_responses(
    *_PROBLEM_TEXT, descriptions=_PROBLEM_TEXT
)
"""OpenAPI entries for the problem+json responses every (admin) route of this API can give."""
