"""Route /api/v1/audit: the audit log of security-relevant actions (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from data_service.api.deps import ADMIN_PROBLEMS, AuditLogDep
from data_service.api.schemas import AuditEntryPage, AuditEntryRead, Instant
from data_service.domain.audit import AuditQuery
from meshmart_common.auth import AdminUser
from meshmart_common.events import AUDIT_ACTION_MAX_LENGTH, AUDIT_EMAIL_MAX_LENGTH, AuditOutcome
from meshmart_common.pagination import PageDep

router = APIRouter(prefix="/audit", tags=["audit"])

ACTION_FILTER_PATTERN = r"^[a-z][a-z_]*(\.[a-z][a-z_]*)*\.?$"
"""An action (``auth.login.failed``) or, ending with a dot, a prefix (``auth.``)."""


@router.get("", response_model=AuditEntryPage, responses=ADMIN_PROBLEMS)
async def list_audit_entries(
    audit_log: AuditLogDep,
    _admin: AdminUser,
    page: PageDep,
    actor: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=AUDIT_EMAIL_MAX_LENGTH,
            description="an account id, or an email (any case; also failed logins' emails)",
            examples=["42", "ada@example.com"],
        ),
    ] = None,
    action: Annotated[
        str | None,
        Query(
            max_length=AUDIT_ACTION_MAX_LENGTH,
            pattern=ACTION_FILTER_PATTERN,
            description="an action, or a prefix ending with a dot: `auth.`, `admin.product.`",
            examples=["auth.login.failed", "admin."],
        ),
    ] = None,
    outcome: Annotated[
        AuditOutcome | None, Query(description="only entries with this outcome")
    ] = None,
    from_: Annotated[
        Instant | None, Query(alias="from", description="earliest time, inclusive (RFC 3339)")
    ] = None,
    to: Annotated[
        Instant | None,
        Query(description="latest time, exclusive (RFC 3339); must not be before from"),
    ] = None,
) -> AuditEntryPage:
    """Audit entries (logins, password changes, admin changes), newest first (admin)."""
    items, total = await audit_log.search(
        AuditQuery(actor=actor, action=action, outcome=outcome, start=from_, end=to),
        offset=page.offset,
        limit=page.page_size,
    )
    return AuditEntryPage(
        items=[AuditEntryRead.of(entry) for entry in items],
        total=total,
        page=page.page,
        page_size=page.page_size,
    )
