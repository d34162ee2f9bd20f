"""Routes /api/v1/points: the caller's balance and history; admin grants."""

from __future__ import annotations

from fastapi import APIRouter, status

from meshmart_common.audit import AdminAuditDep
from meshmart_common.auth import CurrentUser
from meshmart_common.events import AuditAction
from meshmart_common.pagination import PageDep
from trade_service.api.deps import EventsDep, PointsDep, PointsReadDep, problems
from trade_service.api.schemas import (
    PointsEntryPage,
    PointsEntryRead,
    PointsGrantCreate,
    PointsGrantRead,
    PointsRead,
)

router = APIRouter(prefix="/points", tags=["points"])


@router.get("", response_model=PointsRead, responses=problems(401, 422))
async def read_points(page: PageDep, points: PointsReadDep, principal: CurrentUser) -> PointsRead:
    """Read the caller's points and one page of their history, newest first."""
    balance = await points.balance(principal.user_id)
    entries, total = await points.history(
        principal.user_id, offset=page.offset, limit=page.page_size
    )
    return PointsRead(
        balance=balance.balance,
        locked=balance.locked,
        available=balance.available,
        history=PointsEntryPage(
            items=[PointsEntryRead.of(entry) for entry in entries],
            total=total,
            page=page.page,
            page_size=page.page_size,
        ),
    )


@router.post(
    "/grants",
    status_code=status.HTTP_201_CREATED,
    response_model=PointsGrantRead,
    responses=problems(400, 401, 403, 422),
)
async def grant_points(
    body: PointsGrantCreate, points: PointsDep, events: EventsDep, audit: AdminAuditDep
) -> PointsGrantRead:
    """Give a user points (admin; demos and goodwill), recorded as an adjusted entry (audited)."""
    granted = await points.grant(body.user_id, body.points, note=body.reason or None)
    entry = audit.entry(
        AuditAction.POINTS_GRANTED,
        target_type="user",
        target_id=body.user_id,
        details={"points": body.points, "note": body.reason or None},
    )
    # points.changed and the audit entry, committed with the grant.
    await events.publish([granted.event, entry])
    return PointsGrantRead.of(granted.balance, body.points)
