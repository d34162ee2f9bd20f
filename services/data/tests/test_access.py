"""Every data route (stats, reports, audit, dead letters) is admin only: else 401 or 403."""

from __future__ import annotations

import pytest
from httpx import AsyncClient

from meshmart_common.testing import assert_problem

ROUTES = [
    "/api/v1/stats/overview",
    "/api/v1/stats/sales",
    "/api/v1/stats/top-products",
    "/api/v1/reports/daily",
    "/api/v1/reports/daily?format=csv",
    "/api/v1/audit",
]


@pytest.mark.parametrize("path", ROUTES)
async def test_without_a_token_is_401(client: AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("path", ROUTES)
async def test_with_a_garbage_token_is_401(client: AsyncClient, path: str) -> None:
    assert_problem(await client.get(path, headers={"Authorization": "Bearer not.a.jwt"}), 401)


@pytest.mark.parametrize("path", ROUTES)
async def test_a_customer_is_403(
    client: AsyncClient, customer_headers: dict[str, str], path: str
) -> None:
    assert_problem(await client.get(path, headers=customer_headers), 403)


async def test_every_route_is_documented_with_problems_as_problem_json(
    client: AsyncClient,
) -> None:
    schema = (await client.get("/openapi.json")).json()
    operations = {
        (path, method): operation
        for path, item in schema["paths"].items()
        if path.startswith("/api/v1/")
        for method, operation in item.items()
    }
    assert sorted(operations) == [
        ("/api/v1/admin/config", "get"),
        ("/api/v1/admin/dead-letters", "get"),
        ("/api/v1/admin/dead-letters/{dead_letter_id}", "delete"),
        ("/api/v1/admin/dead-letters/{dead_letter_id}/replay", "post"),
        ("/api/v1/audit", "get"),
        ("/api/v1/reports/daily", "get"),
        ("/api/v1/stats/overview", "get"),
        ("/api/v1/stats/sales", "get"),
        ("/api/v1/stats/top-products", "get"),
    ]
    for key, operation in operations.items():
        assert operation["description"]
        # /admin/config takes no input, so it has nothing to answer 422 for.
        for status in ("401", "403") if key[0] == "/api/v1/admin/config" else ("401", "403", "422"):
            assert list(operation["responses"][status]["content"]) == ["application/problem+json"]
    daily = operations["/api/v1/reports/daily", "get"]["responses"]["200"]["content"]
    assert set(daily) == {"application/json", "text/csv"}
    sales_params = {p["name"] for p in operations["/api/v1/stats/sales", "get"]["parameters"]}
    assert sales_params == {"from", "to", "granularity"}
    audit_params = {p["name"] for p in operations["/api/v1/audit", "get"]["parameters"]}
    assert audit_params == {"actor", "action", "outcome", "from", "to", "page", "page_size"}
