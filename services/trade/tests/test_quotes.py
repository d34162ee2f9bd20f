"""Checkout quotes: coupon discounts, minimum spend, and points, for the caller only."""

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import update

from meshmart_common.db import Database
from meshmart_common.testing import assert_problem
from trade_service.repository.models import Coupon, CouponStatus

Factory = Callable[..., Awaitable[dict[str, Any]]]
EndCampaign = Callable[[int], Awaitable[None]]
TokenMaker = Callable[..., str]
QUOTES = "/api/v1/quotes"


def bearer(make_token: TokenMaker, user_id: int) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(user_id)}"}


async def quote(client: AsyncClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await client.post(QUOTES, json=body, headers=headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_plain_quote_costs_the_subtotal(
    client: AsyncClient, customer_headers: dict[str, str]
) -> None:
    assert await quote(client, customer_headers, subtotal_cents=4599) == {
        "subtotal_cents": 4599,
        "coupon_code": None,
        "discount_cents": 0,
        "points_to_redeem": 0,
        "points_discount_cents": 0,
        "total_cents": 4599,
    }


async def test_percent_coupon_takes_the_floor_of_the_percentage(
    client: AsyncClient,
    customer_headers: dict[str, str],
    create_campaign: Factory,
    claim_coupon: Factory,
) -> None:
    await create_campaign(code="WELCOME10", discount_value=10, min_spend_cents=2000)
    await claim_coupon("WELCOME10")

    result = await quote(client, customer_headers, subtotal_cents=2599, coupon_code="WELCOME10")

    assert result == {
        "subtotal_cents": 2599,
        "coupon_code": "WELCOME10",
        "discount_cents": 259,
        "points_to_redeem": 0,
        "points_discount_cents": 0,
        "total_cents": 2340,
    }


async def test_fixed_coupon_takes_its_cents(
    client: AsyncClient,
    customer_headers: dict[str, str],
    create_campaign: Factory,
    claim_coupon: Factory,
) -> None:
    await create_campaign(
        code="SAVE5", discount_type="fixed", discount_value=500, min_spend_cents=3000
    )
    await claim_coupon("SAVE5")
    result = await quote(client, customer_headers, subtotal_cents=3000, coupon_code="save5")
    assert (result["coupon_code"], result["discount_cents"], result["total_cents"]) == (
        "SAVE5",
        500,
        2500,
    )


@pytest.mark.parametrize(
    ("discount_type", "value", "subtotal", "discount"),
    [("fixed", 5000, 3000, 3000), ("percent", 100, 1999, 1999), ("fixed", 100, 0, 0)],
)
async def test_discount_never_exceeds_the_subtotal(
    client: AsyncClient,
    customer_headers: dict[str, str],
    create_campaign: Factory,
    claim_coupon: Factory,
    discount_type: str,
    value: int,
    subtotal: int,
    discount: int,
) -> None:
    await create_campaign(code="BIG", discount_type=discount_type, discount_value=value)
    await claim_coupon("BIG")
    result = await quote(client, customer_headers, subtotal_cents=subtotal, coupon_code="BIG")
    assert (result["discount_cents"], result["total_cents"]) == (discount, subtotal - discount)


async def test_coupon_below_its_minimum_spend_is_invalid(
    client: AsyncClient,
    customer_headers: dict[str, str],
    create_campaign: Factory,
    claim_coupon: Factory,
) -> None:
    await create_campaign(code="MIN30", min_spend_cents=3000)
    await claim_coupon("MIN30")
    response = await client.post(
        QUOTES, json={"subtotal_cents": 2999, "coupon_code": "MIN30"}, headers=customer_headers
    )
    body = assert_problem(response, 422, field="coupon_code")
    assert "3000" in body["errors"][0]["message"]
    # Exactly the minimum qualifies.
    assert (await quote(client, customer_headers, subtotal_cents=3000, coupon_code="MIN30"))[
        "discount_cents"
    ] == 300


async def test_coupon_the_caller_does_not_hold_is_invalid(
    client: AsyncClient,
    make_token: TokenMaker,
    create_campaign: Factory,
    claim_coupon: Factory,
) -> None:
    await create_campaign(code="ALICE-ONLY")
    await claim_coupon("ALICE-ONLY", 2)
    for code in ["ALICE-ONLY", "NO-SUCH-CODE"]:
        response = await client.post(
            QUOTES,
            json={"subtotal_cents": 5000, "coupon_code": code},
            headers=bearer(make_token, 3),
        )
        assert_problem(response, 422, field="coupon_code")


@pytest.mark.parametrize("status", [CouponStatus.LOCKED, CouponStatus.USED, CouponStatus.EXPIRED])
async def test_coupon_that_is_not_available_is_invalid(
    client: AsyncClient,
    customer_headers: dict[str, str],
    create_campaign: Factory,
    claim_coupon: Factory,
    database: Database,
    status: CouponStatus,
) -> None:
    await create_campaign(code="SPENT")
    coupon = await claim_coupon("SPENT")
    async with database.session() as session:
        await session.execute(
            update(Coupon).where(Coupon.id == coupon["id"]).values(status=status.value)
        )
    response = await client.post(
        QUOTES, json={"subtotal_cents": 5000, "coupon_code": "SPENT"}, headers=customer_headers
    )
    assert_problem(response, 422, field="coupon_code")


async def test_coupon_of_an_ended_campaign_is_invalid(
    client: AsyncClient,
    customer_headers: dict[str, str],
    create_campaign: Factory,
    claim_coupon: Factory,
    end_campaign: EndCampaign,
) -> None:
    campaign = await create_campaign(code="LATE")
    await claim_coupon("LATE")
    await end_campaign(campaign["id"])
    response = await client.post(
        QUOTES, json={"subtotal_cents": 5000, "coupon_code": "LATE"}, headers=customer_headers
    )
    body = assert_problem(response, 422, field="coupon_code")
    assert "expired" in body["errors"][0]["message"]


async def test_points_redeem_one_cent_each(
    client: AsyncClient,
    customer_headers: dict[str, str],
    grant_points: Factory,
) -> None:
    await grant_points(500)
    result = await quote(client, customer_headers, subtotal_cents=2000, points_to_redeem=300)
    assert result == {
        "subtotal_cents": 2000,
        "coupon_code": None,
        "discount_cents": 0,
        "points_to_redeem": 300,
        "points_discount_cents": 300,
        "total_cents": 1700,
    }


async def test_coupon_and_points_together(
    client: AsyncClient,
    customer_headers: dict[str, str],
    create_campaign: Factory,
    claim_coupon: Factory,
    grant_points: Factory,
) -> None:
    await create_campaign(code="TEN", discount_value=10)
    await claim_coupon("TEN")
    await grant_points(500)

    result = await quote(
        client, customer_headers, subtotal_cents=4000, coupon_code="TEN", points_to_redeem=500
    )

    assert (result["discount_cents"], result["points_discount_cents"], result["total_cents"]) == (
        400,
        500,
        3100,
    )
    # Every point may go when the rest is exactly covered: 1000 - 100 discount = 900.
    await grant_points(1000)
    full = await quote(
        client, customer_headers, subtotal_cents=1000, coupon_code="TEN", points_to_redeem=900
    )
    assert full["total_cents"] == 0


async def test_more_points_than_available_is_invalid(
    client: AsyncClient, customer_headers: dict[str, str], grant_points: Factory
) -> None:
    await grant_points(100)
    response = await client.post(
        QUOTES, json={"subtotal_cents": 5000, "points_to_redeem": 101}, headers=customer_headers
    )
    body = assert_problem(response, 422, field="points_to_redeem")
    assert "only 100 points" in body["errors"][0]["message"]


async def test_points_without_an_account_are_invalid(
    client: AsyncClient, customer_headers: dict[str, str]
) -> None:
    response = await client.post(
        QUOTES, json={"subtotal_cents": 5000, "points_to_redeem": 1}, headers=customer_headers
    )
    assert_problem(response, 422, field="points_to_redeem")


async def test_points_are_capped_at_what_the_discount_leaves(
    client: AsyncClient,
    customer_headers: dict[str, str],
    create_campaign: Factory,
    claim_coupon: Factory,
    grant_points: Factory,
) -> None:
    await create_campaign(code="FIVE", discount_type="fixed", discount_value=500)
    await claim_coupon("FIVE")
    await grant_points(5000)
    response = await client.post(
        QUOTES,
        json={"subtotal_cents": 2000, "coupon_code": "FIVE", "points_to_redeem": 1501},
        headers=customer_headers,
    )
    body = assert_problem(response, 422, field="points_to_redeem")
    assert "at most 1500 points" in body["errors"][0]["message"]


async def test_coupon_and_points_errors_are_reported_together(
    client: AsyncClient, customer_headers: dict[str, str]
) -> None:
    response = await client.post(
        QUOTES,
        json={"subtotal_cents": 2000, "coupon_code": "NOPE", "points_to_redeem": 10},
        headers=customer_headers,
    )
    body = assert_problem(response, 422)
    assert [e["field"] for e in body["errors"]] == ["coupon_code", "points_to_redeem"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"subtotal_cents": 19.99}, "subtotal_cents"),
        ({"subtotal_cents": "1999"}, "subtotal_cents"),
        ({"subtotal_cents": True}, "subtotal_cents"),
        ({"subtotal_cents": -1}, "subtotal_cents"),
        ({"subtotal_cents": 10**13}, "subtotal_cents"),
        ({}, "subtotal_cents"),
        ({"subtotal_cents": 100, "points_to_redeem": -5}, "points_to_redeem"),
        ({"subtotal_cents": 100, "points_to_redeem": 1.5}, "points_to_redeem"),
        ({"subtotal_cents": 100, "coupon_code": "x"}, "coupon_code"),
        ({"subtotal_cents": 100, "coupon_code": 5}, "coupon_code"),
        ({"subtotal_cents": 100, "shipping_cents": 5}, "shipping_cents"),
    ],
)
async def test_quote_body_is_validated(
    client: AsyncClient, customer_headers: dict[str, str], body: dict[str, Any], field: str
) -> None:
    assert_problem(await client.post(QUOTES, json=body, headers=customer_headers), 422, field=field)


async def test_quote_needs_a_token(client: AsyncClient) -> None:
    assert_problem(await client.post(QUOTES, json={"subtotal_cents": 100}), 401)
