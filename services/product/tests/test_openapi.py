"""The OpenAPI document describes the product API as it behaves.

Descriptions and problem+json errors are checked for every service by
meshmart_common.testing.PlatformContract (test_platform_endpoints.py).
"""

from typing import Any

from httpx import AsyncClient


async def openapi(client: AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    schema: dict[str, Any] = response.json()
    return schema


async def test_the_published_api_is_the_catalogue_and_the_dead_letter_admin(
    client: AsyncClient,
) -> None:
    schema = await openapi(client)
    operations = {
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method in item
        if path.startswith("/api/v1/")
    }
    assert operations == {
        ("GET", "/api/v1/categories"),
        ("POST", "/api/v1/categories"),
        ("GET", "/api/v1/products"),
        ("POST", "/api/v1/products"),
        ("GET", "/api/v1/products/{product_id}"),
        ("PATCH", "/api/v1/products/{product_id}"),
        ("DELETE", "/api/v1/products/{product_id}"),
        ("PUT", "/api/v1/products/{product_id}/stock"),
        ("GET", "/api/v1/products/{product_id}/reviews"),
        ("POST", "/api/v1/products/{product_id}/reviews"),
        ("GET", "/api/v1/admin/config"),
        ("GET", "/api/v1/admin/dead-letters"),
        ("POST", "/api/v1/admin/dead-letters/{dead_letter_id}/replay"),
        ("DELETE", "/api/v1/admin/dead-letters/{dead_letter_id}"),
    }


async def test_money_is_documented_as_integer_cents_and_sort_as_an_enum(
    client: AsyncClient,
) -> None:
    schema = await openapi(client)
    components = schema["components"]["schemas"]
    assert components["ProductCreate"]["properties"]["price_cents"]["type"] == "integer"
    assert components["ProductRead"]["properties"]["price_cents"]["type"] == "integer"
    parameters = schema["paths"]["/api/v1/products"]["get"]["parameters"]
    sort = next(p for p in parameters if p["name"] == "sort")
    assert set(components[sort["schema"]["$ref"].rsplit("/", 1)[-1]]["enum"]) == {
        "price",
        "-price",
        "rating",
        "-rating",
        "created_at",
        "-created_at",
        "title",
    }
