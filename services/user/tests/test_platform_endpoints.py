"""The user service starts, migrates and answers the platform endpoints."""

from pathlib import Path

from httpx import AsyncClient
from sqlalchemy import MetaData

from meshmart_common.testing import migrations_diff

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"


async def test_healthz_and_readyz_answer_ok(client: AsyncClient) -> None:
    health = await client.get("/healthz")
    assert health.json() == {"status": "ok", "service": "user"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok"}


async def test_metrics_and_openapi_are_served(client: AsyncClient) -> None:
    await client.get("/healthz")
    metrics = await client.get("/metrics")
    assert 'http_requests_total{method="GET",route="/healthz",status="200"}' in metrics.text
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    schema = (await client.get("/openapi.json")).json()
    assert schema["info"]["title"] == "MeshMart user service"


async def test_every_route_is_documented_with_a_summary_and_problem_responses(
    client: AsyncClient,
) -> None:
    schema = (await client.get("/openapi.json")).json()
    operations = [
        (path, method, op) for path, item in schema["paths"].items() for method, op in item.items()
    ]
    assert {(path, method) for path, method, _ in operations} >= {
        ("/api/v1/auth/register", "post"),
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/refresh", "post"),
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/users/me", "get"),
        ("/api/v1/users/me", "patch"),
        ("/api/v1/users/me/password", "put"),
        ("/api/v1/users/me/addresses", "get"),
        ("/api/v1/users/me/addresses", "post"),
        ("/api/v1/users/me/addresses/{address_id}", "patch"),
        ("/api/v1/users/me/addresses/{address_id}", "delete"),
        ("/api/v1/users", "get"),
        ("/.well-known/jwks.json", "get"),
    }
    for path, method, operation in operations:
        assert operation.get("description"), (path, method)
    login_401 = schema["paths"]["/api/v1/auth/login"]["post"]["responses"]["401"]
    assert "application/problem+json" in login_401["content"]


def test_migrations_match_the_models(empty_database_url: str, service_metadata: MetaData) -> None:
    assert migrations_diff(MIGRATIONS, empty_database_url, service_metadata) == []
