"""The OpenAPI document describes the trade API as it behaves."""

from typing import Any

from httpx import AsyncClient


async def openapi(client: AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    schema: dict[str, Any] = response.json()
    return schema


async def test_every_route_is_documented_and_errors_are_problem_json(client: AsyncClient) -> None:
    schema = await openapi(client)
    operations = {
        (method.upper(), path): operation
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if path.startswith("/api/v1/")
    }
    assert set(operations) == {
        ("GET", "/api/v1/points"),
        ("POST", "/api/v1/points/grants"),
        ("GET", "/api/v1/coupon-campaigns"),
        ("POST", "/api/v1/coupon-campaigns"),
        ("GET", "/api/v1/coupon-campaigns/{campaign_id}"),
        ("POST", "/api/v1/coupons/claim"),
        ("GET", "/api/v1/coupons"),
        ("POST", "/api/v1/quotes"),
        ("GET", "/api/v1/admin/config"),
        ("GET", "/api/v1/admin/dead-letters"),
        ("POST", "/api/v1/admin/dead-letters/{dead_letter_id}/replay"),
        ("DELETE", "/api/v1/admin/dead-letters/{dead_letter_id}"),
    }
    for key, operation in operations.items():
        assert operation.get("description"), key
        assert "401" in operation["responses"], key
        for status, response in operation["responses"].items():
            if status.startswith("4"):
                assert list(response["content"]) == ["application/problem+json"], (key, status)


async def test_money_and_points_are_documented_as_integers(client: AsyncClient) -> None:
    components = (await openapi(client))["components"]["schemas"]
    for name, field in [
        ("QuoteCreate", "subtotal_cents"),
        ("QuoteCreate", "points_to_redeem"),
        ("QuoteRead", "total_cents"),
        ("CampaignCreate", "discount_value"),
        ("CampaignCreate", "min_spend_cents"),
        ("PointsRead", "balance"),
        ("PointsGrantCreate", "points"),
    ]:
        assert components[name]["properties"][field]["type"] == "integer", (name, field)
    assert set(components["CouponStatus"]["enum"]) == {"available", "locked", "used", "expired"}
    assert set(components["PointsReason"]["enum"]) == {
        "earned",
        "redeemed",
        "refunded",
        "locked",
        "released",
        "adjusted",
    }
    assert set(components["DiscountType"]["enum"]) == {"fixed", "percent"}
