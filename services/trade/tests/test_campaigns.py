"""Coupon campaigns: admins open them and read their counters."""

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import pytest
from httpx import AsyncClient

from meshmart_common.testing import assert_problem

Factory = Callable[..., Awaitable[dict[str, Any]]]
CAMPAIGNS = "/api/v1/coupon-campaigns"


def campaign_body(**fields: Any) -> dict[str, Any]:
    return {
        "code": "SPRING-25",
        "name": "Spring sale",
        "discount_type": "percent",
        "discount_value": 25,
        "min_spend_cents": 5000,
        "total_quantity": 200,
        "per_user_limit": 2,
        "starts_at": "2026-03-01T00:00:00Z",
        "ends_at": "2026-06-01T00:00:00Z",
        **fields,
    }


async def test_admin_opens_a_campaign(client: AsyncClient, admin_headers: dict[str, str]) -> None:
    response = await client.post(CAMPAIGNS, json=campaign_body(), headers=admin_headers)

    assert response.status_code == 201, response.text
    campaign = response.json()
    assert campaign == {
        "id": campaign["id"],
        "code": "SPRING-25",
        "name": "Spring sale",
        "discount_type": "percent",
        "discount_value": 25,
        "min_spend_cents": 5000,
        "total_quantity": 200,
        "per_user_limit": 2,
        "starts_at": "2026-03-01T00:00:00Z",
        "ends_at": "2026-06-01T00:00:00Z",
        "claimed_count": 0,
        "used_count": 0,
        "created_at": campaign["created_at"],
    }
    assert datetime.fromisoformat(campaign["created_at"]).utcoffset() is not None
    assert response.headers["location"] == f"{CAMPAIGNS}/{campaign['id']}"
    read = await client.get(f"{CAMPAIGNS}/{campaign['id']}", headers=admin_headers)
    assert read.json() == campaign


async def test_campaign_times_are_stored_in_utc(
    client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.post(
        CAMPAIGNS,
        json=campaign_body(
            starts_at="2026-03-01T02:30:00+02:00", ends_at="2026-03-31T19:00:00-05:00"
        ),
        headers=admin_headers,
    )
    assert response.status_code == 201, response.text
    assert response.json()["starts_at"] == "2026-03-01T00:30:00Z"
    assert response.json()["ends_at"] == "2026-04-01T00:00:00Z"


async def test_fixed_campaign_takes_cents(
    client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.post(
        CAMPAIGNS,
        json=campaign_body(code="FIVE-OFF", discount_type="fixed", discount_value=500),
        headers=admin_headers,
    )
    assert response.status_code == 201, response.text
    assert (response.json()["discount_type"], response.json()["discount_value"]) == ("fixed", 500)


async def test_duplicate_campaign_code_is_a_conflict(
    client: AsyncClient, admin_headers: dict[str, str], create_campaign: Factory
) -> None:
    await create_campaign(code="TAKEN-1")
    response = await client.post(
        CAMPAIGNS, json=campaign_body(code="TAKEN-1"), headers=admin_headers
    )
    assert_problem(response, 409)
    listing = (await client.get(CAMPAIGNS, headers=admin_headers)).json()
    assert listing["total"] == 1


@pytest.mark.parametrize("code", ["spring", "AB", "X" * 33, "SPRING SALE", "SPRING_25", "", 42])
async def test_campaign_code_is_3_to_32_upper_case_letters_digits_and_dashes(
    client: AsyncClient, admin_headers: dict[str, str], code: Any
) -> None:
    response = await client.post(CAMPAIGNS, json=campaign_body(code=code), headers=admin_headers)
    assert_problem(response, 422, field="code")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"discount_value": 101}, "discount_value"),
        ({"discount_value": 0}, "discount_value"),
        ({"discount_value": 10.5}, "discount_value"),
        ({"discount_value": "10"}, "discount_value"),
        ({"discount_value": True}, "discount_value"),
        ({"discount_type": "fixed", "discount_value": 0}, "discount_value"),
        ({"discount_type": "bogo"}, "discount_type"),
        ({"min_spend_cents": -1}, "min_spend_cents"),
        ({"min_spend_cents": 19.99}, "min_spend_cents"),
        ({"total_quantity": 0}, "total_quantity"),
        ({"per_user_limit": 0}, "per_user_limit"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "bad\u0000name"}, "name"),
        ({"starts_at": "2026-03-01T00:00:00"}, "starts_at"),
        ({"starts_at": "yesterday"}, "starts_at"),
        ({"ends_at": "2026-03-01T00:00:00Z"}, "ends_at"),
        ({"ends_at": "2026-02-01T00:00:00Z"}, "ends_at"),
        ({"ends_at": "9999-12-31T23:00:00-05:00"}, "ends_at"),
        ({"starts_at": "0001-01-01T00:00:00+01:00"}, "starts_at"),
        ({"surprise": 1}, "surprise"),
    ],
)
async def test_invalid_campaigns_are_rejected_with_the_field_named(
    client: AsyncClient, admin_headers: dict[str, str], fields: dict[str, Any], field: str
) -> None:
    response = await client.post(CAMPAIGNS, json=campaign_body(**fields), headers=admin_headers)
    assert_problem(response, 422, field=field)
    assert (await client.get(CAMPAIGNS, headers=admin_headers)).json()["total"] == 0


async def test_missing_required_fields_are_named(
    client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    body = assert_problem(await client.post(CAMPAIGNS, json={}, headers=admin_headers), 422)
    assert {e["field"] for e in body["errors"]} == {
        "code",
        "name",
        "discount_type",
        "discount_value",
        "total_quantity",
        "starts_at",
        "ends_at",
    }


async def test_campaigns_are_for_admins_only(
    client: AsyncClient, customer_headers: dict[str, str], create_campaign: Factory
) -> None:
    campaign = await create_campaign()
    assert_problem(
        await client.post(CAMPAIGNS, json=campaign_body(), headers=customer_headers), 403
    )
    assert_problem(await client.get(CAMPAIGNS, headers=customer_headers), 403)
    assert_problem(await client.get(f"{CAMPAIGNS}/{campaign['id']}", headers=customer_headers), 403)
    assert_problem(await client.post(CAMPAIGNS, json=campaign_body()), 401)
    assert_problem(await client.get(CAMPAIGNS), 401)
    assert_problem(await client.get(f"{CAMPAIGNS}/{campaign['id']}"), 401)


async def test_campaigns_are_listed_newest_first_in_pages(
    client: AsyncClient, admin_headers: dict[str, str], create_campaign: Factory
) -> None:
    created = [(await create_campaign(code=f"LIST-{n}"))["id"] for n in range(3)]

    first = (await client.get(CAMPAIGNS, params={"page_size": 2}, headers=admin_headers)).json()
    second = (
        await client.get(CAMPAIGNS, params={"page_size": 2, "page": 2}, headers=admin_headers)
    ).json()

    assert [c["id"] for c in first["items"] + second["items"]] == created[::-1]
    assert (first["total"], first["page"], first["page_size"]) == (3, 1, 2)
    assert (second["total"], second["page"], len(second["items"])) == (3, 2, 1)
    assert first["items"][0]["code"] == "LIST-2"


async def test_unknown_campaign_is_not_found_and_bad_ids_are_invalid(
    client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    assert_problem(await client.get(f"{CAMPAIGNS}/4242", headers=admin_headers), 404)
    for bad in ["0", "-1", str(2**31), "abc"]:
        assert_problem(
            await client.get(f"{CAMPAIGNS}/{bad}", headers=admin_headers), 422, field="campaign_id"
        )
    assert_problem(
        await client.get(CAMPAIGNS, params={"page_size": 101}, headers=admin_headers),
        422,
        field="page_size",
    )
