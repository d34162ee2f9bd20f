"""The demo seeder: two campaigns and 500 points for each demo customer, inserted once."""

from collections.abc import Callable

from httpx import AsyncClient
from sqlalchemy import func, select

from meshmart_common.db import Database
from meshmart_common.messaging.envelope import CloudEvent
from meshmart_common.settings import Environment
from trade_service.domain.demo_data import CAMPAIGNS, DEMO_CUSTOMERS, seed
from trade_service.repository.models import CouponCampaign, OutboxEvent, PointsEntry
from trade_service.settings import Settings


def bearer(make_token: Callable[..., str], user_id: int) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user_id)}"}


async def count_rows(database: Database) -> tuple[int, int]:
    async with database.session(read_only=True) as session:
        campaigns = await session.scalar(select(func.count()).select_from(CouponCampaign))
        entries = await session.scalar(select(func.count()).select_from(PointsEntry))
    return int(campaigns or 0), int(entries or 0)


async def test_seeding_twice_inserts_the_demo_data_once(database: Database) -> None:
    settings = Settings(environment=Environment.TEST, database_url=database.url)

    first = await seed(settings, database)
    after_first = await count_rows(database)
    second = await seed(settings, database)

    assert first == "seeded 2 campaigns, 500 points for 3 customers"
    assert after_first == (2, 3)
    assert second == "demo campaigns and points already present"
    assert await count_rows(database) == after_first


async def test_demo_customers_can_use_the_demo_data(
    client: AsyncClient,
    admin_headers: dict[str, str],
    make_token: Callable[..., str],
    database: Database,
) -> None:
    await seed(Settings(environment=Environment.TEST, database_url=database.url), database)

    campaigns = (await client.get("/api/v1/coupon-campaigns", headers=admin_headers)).json()
    assert sorted(c["code"] for c in campaigns["items"]) == sorted(c.code for c in CAMPAIGNS)
    assert DEMO_CUSTOMERS == (2, 3, 4)
    for user_id in DEMO_CUSTOMERS:
        points = (await client.get("/api/v1/points", headers=bearer(make_token, user_id))).json()
        assert (points["balance"], points["available"]) == (500, 500)

    alice = bearer(make_token, 2)
    claim = await client.post("/api/v1/coupons/claim", json={"code": "WELCOME10"}, headers=alice)
    assert claim.status_code == 201, claim.text
    quote = await client.post(
        "/api/v1/quotes",
        json={"subtotal_cents": 2500, "coupon_code": "WELCOME10", "points_to_redeem": 500},
        headers=alice,
    )
    assert quote.json()["total_cents"] == 2500 - 250 - 500
    save5 = await client.post("/api/v1/coupons/claim", json={"code": "SAVE5"}, headers=alice)
    assert save5.json()["discount_value"] == 500
    assert save5.json()["min_spend_cents"] == 3000


async def test_seeding_completes_partly_seeded_data(database: Database) -> None:
    settings = Settings(environment=Environment.TEST, database_url=database.url)
    await seed(settings, database)
    async with database.session() as session:
        campaign = await session.scalar(
            select(CouponCampaign).where(CouponCampaign.code == "SAVE5")
        )
        assert campaign is not None
        await session.delete(campaign)

    assert await seed(settings, database) == "seeded 1 campaigns, 500 points for 0 customers"
    assert await count_rows(database) == (2, 3)


async def test_the_demo_grants_wait_in_the_outbox(database: Database) -> None:
    settings = Settings(environment=Environment.TEST, database_url=database.url)

    await seed(settings, database)
    await seed(settings, database)

    async with database.session(read_only=True) as session:
        rows = (await session.scalars(select(OutboxEvent).order_by(OutboxEvent.id))).all()
    events = [CloudEvent.from_json(row.body) for row in rows]
    assert [(e.type, e.subject) for e in events] == [
        ("points.changed", str(user_id)) for user_id in DEMO_CUSTOMERS
    ]
    assert all(row.sent_at is None for row in rows)  # published once the service runs
    assert {e.data["reason"] for e in events} == {"adjusted"}
