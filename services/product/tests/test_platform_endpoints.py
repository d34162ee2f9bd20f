"""The product service starts, migrates and answers the platform endpoints."""

from pathlib import Path

from httpx import AsyncClient
from sqlalchemy import MetaData

from meshmart_common.testing import migrations_diff

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"


async def test_healthz_and_readyz_answer_ok(client: AsyncClient) -> None:
    health = await client.get("/healthz")
    assert health.json() == {"status": "ok", "service": "product"}
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
    assert schema["info"]["title"] == "MeshMart product service"


def test_migrations_match_the_models(empty_database_url: str, service_metadata: MetaData) -> None:
    assert migrations_diff(MIGRATIONS, empty_database_url, service_metadata) == []
