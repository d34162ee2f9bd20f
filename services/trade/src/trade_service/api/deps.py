"""Dependencies of the trade API: services on the request session, the outbox, ids, problems."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.db import ReadSessionDep, SessionDep
from meshmart_common.errors import problem_responses
from meshmart_common.events import EventData
from meshmart_common.messaging.envelope import CloudEvent
from meshmart_common.messaging.outbox import EventPublisher
from trade_service.api.schemas import MAX_ID
from trade_service.domain.campaigns import CampaignService
from trade_service.domain.coupons import CouponService
from trade_service.domain.points import PointsService
from trade_service.domain.quotes import QuoteService
from trade_service.events.publisher import publish_all

CampaignId = Annotated[int, Path(ge=1, le=MAX_ID, description="campaign id")]


async def _campaigns(session: SessionDep) -> CampaignService:
    return CampaignService(session)


async def _campaigns_read(session: ReadSessionDep) -> CampaignService:
    return CampaignService(session)


async def _coupons(session: SessionDep) -> CouponService:
    return CouponService(session)


async def _coupons_read(session: ReadSessionDep) -> CouponService:
    return CouponService(session)


async def _points(session: SessionDep) -> PointsService:
    return PointsService(session)


async def _points_read(session: ReadSessionDep) -> PointsService:
    return PointsService(session)


async def _quotes(session: SessionDep) -> QuoteService:
    # The primary, not the replica: a checkout must see the coupon claimed a moment ago.
    return QuoteService(session)


class Events:
    """Publishes events in the request's transaction: they leave only if the request commits."""

    def __init__(self, publisher: EventPublisher, session: AsyncSession) -> None:
        self.publisher = publisher
        self.session = session

    async def publish(self, payloads: Iterable[EventData]) -> list[CloudEvent]:
        """Add the payloads to the outbox (keyed by their aggregate ids)."""
        return await publish_all(self.publisher, self.session, payloads)


async def _events(request: Request, session: SessionDep) -> Events:
    # The same request session as the services' (FastAPI caches it per request).
    publisher: EventPublisher = request.app.state.publisher
    return Events(publisher, session)


CampaignsDep = Annotated[CampaignService, Depends(_campaigns)]
"""Campaigns on the read-write request session."""
CampaignsReadDep = Annotated[CampaignService, Depends(_campaigns_read)]
"""Campaigns on the read-only session (the replica when one is configured)."""
CouponsDep = Annotated[CouponService, Depends(_coupons)]
"""Coupons on the read-write request session."""
CouponsReadDep = Annotated[CouponService, Depends(_coupons_read)]
"""Coupons on the read-only session."""
PointsDep = Annotated[PointsService, Depends(_points)]
"""Points on the read-write request session."""
PointsReadDep = Annotated[PointsService, Depends(_points_read)]
"""Points on the read-only session."""
QuotesDep = Annotated[QuoteService, Depends(_quotes)]
"""Quotes on the primary database."""
EventsDep = Annotated[Events, Depends(_events)]
"""The outbox, on the read-write request session."""

_PROBLEM_TEXT = {
    400: "The body could not be read (not UTF-8 JSON)",
    401: "No valid bearer token",
    403: "The caller is not an admin",
    404: "Not found",
    409: "Conflicts with the current state",
    422: "Invalid input (field errors in `errors`)",
}


def problems(*statuses: int, **texts: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem+json responses a route can give.

    ``texts`` override a status's description: ``problems(404, 409, s404="No such campaign")``.
    """
    overrides = {int(key.removeprefix("s")): text for key, text in texts.items()}
    return problem_responses(*statuses, descriptions={**_PROBLEM_TEXT, **overrides})
