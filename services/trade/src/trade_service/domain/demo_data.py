"""Demo campaigns and points, and their idempotent seeder (`python -m trade_service seed`).

Campaigns are matched by code and the demo points by a marked history
entry, so a second run inserts nothing. The grants' points.changed events go
into the outbox with them; the service's relay publishes them once it runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.db import Database
from meshmart_common.events import EventData
from meshmart_common.settings import ServiceSettings
from trade_service.domain.campaigns import CampaignService, NewCampaign
from trade_service.domain.points import PointsService
from trade_service.events.publisher import new_publisher, publish_all
from trade_service.repository.models import DiscountType, PointsReason

DEMO_WINDOW = (datetime(2025, 1, 1, tzinfo=UTC), datetime(2099, 12, 31, 23, 59, tzinfo=UTC))

CAMPAIGNS: tuple[NewCampaign, ...] = (
    NewCampaign(
        code="WELCOME10",
        name="Welcome: 10% off orders of $20 or more",
        discount_type=DiscountType.PERCENT,
        discount_value=10,
        min_spend_cents=2000,
        total_quantity=1000,
        per_user_limit=1,
        starts_at=DEMO_WINDOW[0],
        ends_at=DEMO_WINDOW[1],
    ),
    NewCampaign(
        code="SAVE5",
        name="$5 off orders of $30 or more",
        discount_type=DiscountType.FIXED,
        discount_value=500,
        min_spend_cents=3000,
        total_quantity=1000,
        per_user_limit=1,
        starts_at=DEMO_WINDOW[0],
        ends_at=DEMO_WINDOW[1],
    ),
)

DEMO_CUSTOMERS = (2, 3, 4)
"""The user service's demo customers alice, bob and carol."""
DEMO_POINTS = 500
DEMO_POINTS_NOTE = "demo points"


@dataclass(frozen=True, slots=True)
class SeedCounts:
    """What one seeding run inserted."""

    campaigns: int
    customers: int
    events: list[EventData] = field(default_factory=list)

    @property
    def nothing(self) -> bool:
        """True when everything was already there."""
        return not (self.campaigns or self.customers)


async def seed_demo_data(session: AsyncSession) -> SeedCounts:
    """Create whichever demo campaign is missing; grant the demo points to whoever lacks them."""
    campaigns = CampaignService(session)
    new_campaigns = 0
    for demo in CAMPAIGNS:
        if await campaigns.get_by_code(demo.code) is None:
            await campaigns.create(demo)
            new_campaigns += 1
    points = PointsService(session)
    new_customers = 0
    events: list[EventData] = []
    for user_id in DEMO_CUSTOMERS:
        if await points.has_entry(user_id, reason=PointsReason.ADJUSTED, note=DEMO_POINTS_NOTE):
            continue
        granted = await points.grant(user_id, DEMO_POINTS, note=DEMO_POINTS_NOTE)
        events.append(granted.event)
        new_customers += 1
    return SeedCounts(campaigns=new_campaigns, customers=new_customers, events=events)


async def seed(settings: ServiceSettings, database: Database) -> str | None:
    """The CLI seeder: fill in the demo campaigns and points; say what was inserted.

    The grants' points.changed go into the outbox in the same transaction.
    """
    async with database.session() as session:
        counts = await seed_demo_data(session)
        await publish_all(new_publisher(), session, counts.events)
    if counts.nothing:
        return "demo campaigns and points already present"
    return (
        f"seeded {counts.campaigns} campaigns, "
        f"{DEMO_POINTS} points for {counts.customers} customers"
    )
