"""The data service starts, migrates and answers the platform endpoints."""

from pathlib import Path

from httpx import AsyncClient

from meshmart_common.testing import PlatformContract


class TestPlatform(PlatformContract):
    service_name = "data"
    title = "MeshMart data service"
    migrations_dir = Path(__file__).resolve().parents[1] / "migrations"


async def test_the_dead_letter_admin_routes_are_published(client: AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    operations = {(path, method) for path, item in schema["paths"].items() for method in item}
    assert operations >= {
        ("/api/v1/admin/dead-letters", "get"),
        ("/api/v1/admin/dead-letters/{dead_letter_id}/replay", "post"),
        ("/api/v1/admin/dead-letters/{dead_letter_id}", "delete"),
    }
