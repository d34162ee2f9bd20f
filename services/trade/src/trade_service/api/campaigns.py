"""Routes /api/v1/coupon-campaigns (admin)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from meshmart_common.audit import AdminAuditDep
from meshmart_common.auth import AdminUser
from meshmart_common.events import AuditAction
from meshmart_common.pagination import PageDep
from trade_service.api.deps import CampaignId, CampaignsDep, CampaignsReadDep, EventsDep, problems
from trade_service.api.schemas import CampaignCreate, CampaignPage, CampaignRead
from trade_service.domain.campaigns import NewCampaign

router = APIRouter(prefix="/coupon-campaigns", tags=["coupon campaigns"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=CampaignRead,
    responses=problems(400, 401, 403, 409, 422, s409="The code is taken"),
)
async def create_campaign(
    body: CampaignCreate,
    campaigns: CampaignsDep,
    events: EventsDep,
    audit: AdminAuditDep,
    response: Response,
) -> CampaignRead:
    """Open a coupon campaign (admin, audited); 409 when the code is taken."""
    campaign = await campaigns.create(
        NewCampaign(
            code=body.code,
            name=body.name,
            discount_type=body.discount_type,
            discount_value=body.discount_value,
            min_spend_cents=body.min_spend_cents,
            total_quantity=body.total_quantity,
            per_user_limit=body.per_user_limit,
            starts_at=body.starts_at,
            ends_at=body.ends_at,
        )
    )
    # The audit entry commits with the campaign (same request session).
    await events.publish(
        [
            audit.entry(
                AuditAction.CAMPAIGN_CREATED,
                target_type="campaign",
                target_id=campaign.id,
                details={
                    "code": campaign.code,
                    "discount_type": campaign.discount_type,
                    "discount_value": campaign.discount_value,
                    "total_quantity": campaign.total_quantity,
                },
            )
        ]
    )
    response.headers["Location"] = f"/api/v1/coupon-campaigns/{campaign.id}"
    return CampaignRead.of(campaign)


@router.get("", response_model=CampaignPage, responses=problems(401, 403, 422))
async def list_campaigns(
    page: PageDep, campaigns: CampaignsReadDep, _admin: AdminUser
) -> CampaignPage:
    """List coupon campaigns with their counters, newest first (admin)."""
    items, total = await campaigns.list_page(offset=page.offset, limit=page.page_size)
    return CampaignPage(
        items=[CampaignRead.of(campaign) for campaign in items],
        total=total,
        page=page.page,
        page_size=page.page_size,
    )


@router.get(
    "/{campaign_id}",
    response_model=CampaignRead,
    responses=problems(401, 403, 404, 422, s404="No such campaign"),
)
async def get_campaign(
    campaign_id: CampaignId, campaigns: CampaignsReadDep, _admin: AdminUser
) -> CampaignRead:
    """Read one coupon campaign with its counters (admin)."""
    return CampaignRead.of(await campaigns.get(campaign_id))
