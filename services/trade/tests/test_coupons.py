"""Claiming coupons: windows, quantities, per-customer limits, and never over-issuing."""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select

from meshmart_common.db import Database
from meshmart_common.testing import assert_problem
from trade_service.repository.models import Coupon

Factory = Callable[..., Awaitable[dict[str, Any]]]
EndCampaign = Callable[[int], Awaitable[None]]
TokenMaker = Callable[..., str]
CLAIM = "/api/v1/coupons/claim"
COUPONS = "/api/v1/coupons"


def bearer(make_token: TokenMaker, user_id: int) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user_id)}"}


async def campaign_counters(
    client: AsyncClient, admin_headers: dict[str, str], campaign_id: int
) -> tuple[int, int]:
    campaign = (
        await client.get(f"/api/v1/coupon-campaigns/{campaign_id}", headers=admin_headers)
    ).json()
    return campaign["claimed_count"], campaign["used_count"]


async def test_customer_claims_a_coupon(
    client: AsyncClient,
    customer_headers: dict[str, str],
    admin_headers: dict[str, str],
    create_campaign: Factory,
) -> None:
    campaign = await create_campaign(
        code="SAVE5", discount_type="fixed", discount_value=500, min_spend_cents=3000
    )

    response = await client.post(CLAIM, json={"code": "SAVE5"}, headers=customer_headers)

    assert response.status_code == 201, response.text
    coupon = response.json()
    assert coupon == {
        "id": coupon["id"],
        "campaign_id": campaign["id"],
        "code": "SAVE5",
        "status": "available",
        "discount_type": "fixed",
        "discount_value": 500,
        "min_spend_cents": 3000,
        "ends_at": campaign["ends_at"],
        "claimed_at": coupon["claimed_at"],
    }
    assert datetime.fromisoformat(coupon["claimed_at"]).utcoffset() is not None
    assert await campaign_counters(client, admin_headers, campaign["id"]) == (1, 0)
    assert (await client.get(COUPONS, headers=customer_headers)).json() == [coupon]


async def test_claim_code_is_matched_in_any_case(
    client: AsyncClient, customer_headers: dict[str, str], create_campaign: Factory
) -> None:
    await create_campaign(code="WELCOME10")
    response = await client.post(CLAIM, json={"code": " welcome10 "}, headers=customer_headers)
    assert response.status_code == 201, response.text
    assert response.json()["code"] == "WELCOME10"


async def test_claiming_an_unknown_code_is_not_found(
    client: AsyncClient, customer_headers: dict[str, str]
) -> None:
    assert_problem(await client.post(CLAIM, json={"code": "NOPE"}, headers=customer_headers), 404)
    assert (await client.get(COUPONS, headers=customer_headers)).json() == []


@pytest.mark.parametrize(
    ("starts", "ends"),
    [(timedelta(days=1), timedelta(days=2)), (timedelta(days=-2), timedelta(seconds=-1))],
    ids=["not-started", "ended"],
)
async def test_campaign_outside_its_window_is_not_claimable(
    client: AsyncClient,
    customer_headers: dict[str, str],
    admin_headers: dict[str, str],
    create_campaign: Factory,
    starts: timedelta,
    ends: timedelta,
) -> None:
    now = datetime.now(UTC)
    campaign = await create_campaign(
        code="WINDOW", starts_at=(now + starts).isoformat(), ends_at=(now + ends).isoformat()
    )
    body = assert_problem(
        await client.post(CLAIM, json={"code": "WINDOW"}, headers=customer_headers), 409
    )
    assert "not claimable now" in body["detail"]
    assert await campaign_counters(client, admin_headers, campaign["id"]) == (0, 0)


async def test_sold_out_campaign_is_a_conflict(
    client: AsyncClient,
    make_token: TokenMaker,
    admin_headers: dict[str, str],
    create_campaign: Factory,
    claim_coupon: Factory,
) -> None:
    campaign = await create_campaign(code="ONLY-TWO", total_quantity=2)
    await claim_coupon("ONLY-TWO", 1)
    await claim_coupon("ONLY-TWO", 2)

    response = await client.post(CLAIM, json={"code": "ONLY-TWO"}, headers=bearer(make_token, 3))

    body = assert_problem(response, 409)
    assert "sold out" in body["detail"]
    assert await campaign_counters(client, admin_headers, campaign["id"]) == (2, 0)


async def test_per_customer_limit_is_enforced(
    client: AsyncClient,
    customer_headers: dict[str, str],
    admin_headers: dict[str, str],
    create_campaign: Factory,
    claim_coupon: Factory,
) -> None:
    campaign = await create_campaign(code="TWICE", per_user_limit=2)
    first = await claim_coupon("TWICE")
    second = await claim_coupon("TWICE")

    third = await client.post(CLAIM, json={"code": "TWICE"}, headers=customer_headers)

    body = assert_problem(third, 409)
    assert "per customer" in body["detail"]
    assert first["id"] != second["id"]
    assert await campaign_counters(client, admin_headers, campaign["id"]) == (2, 0)
    assert len((await client.get(COUPONS, headers=customer_headers)).json()) == 2


async def test_concurrent_claims_never_over_issue(
    client: AsyncClient,
    make_token: TokenMaker,
    admin_headers: dict[str, str],
    create_campaign: Factory,
    database: Database,
) -> None:
    campaign = await create_campaign(code="RUSH", total_quantity=3)

    responses = await asyncio.gather(
        *(
            client.post(CLAIM, json={"code": "RUSH"}, headers=bearer(make_token, user_id))
            for user_id in range(1, 13)
        )
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 3 + [409] * 9
    for response in responses:
        if response.status_code == 409:
            assert "sold out" in assert_problem(response, 409)["detail"]
    assert await campaign_counters(client, admin_headers, campaign["id"]) == (3, 0)
    async with database.session(read_only=True) as session:
        stored = await session.scalar(select(func.count()).select_from(Coupon))
    assert stored == 3


async def test_concurrent_claims_by_one_customer_respect_the_limit(
    client: AsyncClient,
    customer_headers: dict[str, str],
    admin_headers: dict[str, str],
    create_campaign: Factory,
) -> None:
    campaign = await create_campaign(code="ONCE", total_quantity=50, per_user_limit=1)

    responses = await asyncio.gather(
        *(client.post(CLAIM, json={"code": "ONCE"}, headers=customer_headers) for _ in range(6))
    )

    assert sorted(r.status_code for r in responses) == [201] + [409] * 5
    assert await campaign_counters(client, admin_headers, campaign["id"]) == (1, 0)
    assert len((await client.get(COUPONS, headers=customer_headers)).json()) == 1


@pytest.mark.parametrize("code", ["", "AB", "a b c", None, 123, "X" * 33])
async def test_claim_body_is_validated(
    client: AsyncClient, customer_headers: dict[str, str], code: Any
) -> None:
    response = await client.post(CLAIM, json={"code": code}, headers=customer_headers)
    assert_problem(response, 422, field="code")


async def test_claim_rejects_unknown_fields_and_needs_a_token(
    client: AsyncClient, customer_headers: dict[str, str], create_campaign: Factory
) -> None:
    await create_campaign(code="FIELDS")
    response = await client.post(
        CLAIM, json={"code": "FIELDS", "user_id": 7}, headers=customer_headers
    )
    assert_problem(response, 422, field="user_id")
    assert_problem(await client.post(CLAIM, json={"code": "FIELDS"}), 401)
    assert_problem(await client.get(COUPONS), 401)


async def test_customers_list_only_their_own_coupons_newest_first(
    client: AsyncClient,
    make_token: TokenMaker,
    create_campaign: Factory,
    claim_coupon: Factory,
) -> None:
    await create_campaign(code="FIRST")
    await create_campaign(code="SECOND")
    first = await claim_coupon("FIRST", 7)
    second = await claim_coupon("SECOND", 7)
    await claim_coupon("FIRST", 8)

    mine = (await client.get(COUPONS, headers=bearer(make_token, 7))).json()

    assert [c["id"] for c in mine] == [second["id"], first["id"]]
    assert [c["code"] for c in mine] == ["SECOND", "FIRST"]
    other = (await client.get(COUPONS, headers=bearer(make_token, 8))).json()
    assert [c["code"] for c in other] == ["FIRST"]


async def test_coupon_of_an_ended_campaign_shows_as_expired(
    client: AsyncClient,
    customer_headers: dict[str, str],
    create_campaign: Factory,
    claim_coupon: Factory,
    end_campaign: EndCampaign,
) -> None:
    old = await create_campaign(code="OLD")
    await create_campaign(code="NEW")
    expired = await claim_coupon("OLD")
    live = await claim_coupon("NEW")
    await end_campaign(old["id"])

    listing = (await client.get(COUPONS, headers=customer_headers)).json()
    by_status = {
        status: [
            c["id"]
            for c in (
                await client.get(COUPONS, params={"status": status}, headers=customer_headers)
            ).json()
        ]
        for status in ("available", "expired", "locked", "used")
    }

    assert {c["code"]: c["status"] for c in listing} == {"OLD": "expired", "NEW": "available"}
    assert by_status == {
        "available": [live["id"]],
        "expired": [expired["id"]],
        "locked": [],
        "used": [],
    }


async def test_coupon_status_filter_must_be_known(
    client: AsyncClient, customer_headers: dict[str, str]
) -> None:
    response = await client.get(COUPONS, params={"status": "gone"}, headers=customer_headers)
    assert_problem(response, 422, field="status")
