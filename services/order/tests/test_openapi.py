"""The OpenAPI document describes the order API as it behaves."""

from __future__ import annotations

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
        ("GET", "/api/v1/cart"),
        ("DELETE", "/api/v1/cart"),
        ("PUT", "/api/v1/cart/items/{product_id}"),
        ("DELETE", "/api/v1/cart/items/{product_id}"),
        ("GET", "/api/v1/orders"),
        ("POST", "/api/v1/orders"),
        ("GET", "/api/v1/orders/{order_id}"),
        ("POST", "/api/v1/orders/{order_id}/pay"),
        ("POST", "/api/v1/orders/{order_id}/cancel"),
        ("POST", "/api/v1/orders/{order_id}/ship"),
        ("POST", "/api/v1/orders/{order_id}/complete"),
        ("GET", "/api/v1/admin/config"),
        ("GET", "/api/v1/admin/dead-letters"),
        ("POST", "/api/v1/admin/dead-letters/{dead_letter_id}/replay"),
        ("DELETE", "/api/v1/admin/dead-letters/{dead_letter_id}"),
    }
    for key, operation in operations.items():
        assert operation.get("description"), key
        assert "401" in operation["responses"], key
        for status, response in operation["responses"].items():
            if status.startswith(("4", "5")):
                assert list(response["content"]) == ["application/problem+json"], (key, status)


async def test_checkout_documents_the_idempotency_key_and_its_answers(
    client: AsyncClient,
) -> None:
    operation = (await openapi(client))["paths"]["/api/v1/orders"]["post"]
    [header] = [p for p in operation["parameters"] if p["in"] == "header"]
    assert header["name"] == "Idempotency-Key"
    assert header["required"] is False
    assert set(operation["responses"]) == {
        "200",
        "201",
        "401",
        "409",
        "422",
        "429",
        "502",
        "503",
        "504",
    }


async def test_money_and_quantities_are_integers(client: AsyncClient) -> None:
    components = (await openapi(client))["components"]["schemas"]
    for name, field in (
        ("OrderRead", "total_cents"),
        ("OrderRead", "subtotal_cents"),
        ("OrderLineRead", "unit_price_cents"),
        ("CartItemRead", "line_total_cents"),
        ("CartRead", "subtotal_cents"),
        ("CartItemUpdate", "quantity"),
    ):
        assert components[name]["properties"][field]["type"] == "integer", (name, field)
    assert set(components["OrderStatus"]["enum"]) == {
        "PENDING",
        "AWAITING_PAYMENT",
        "PAID",
        "SHIPPED",
        "COMPLETED",
        "REJECTED",
        "CANCELLED",
    }
