"""The user service starts, migrates and answers the platform endpoints."""

from pathlib import Path

from httpx import AsyncClient

from meshmart_common.testing import PlatformContract


class TestPlatform(PlatformContract):
    service_name = "user"
    title = "MeshMart user service"
    migrations_dir = Path(__file__).resolve().parents[1] / "migrations"


async def test_every_route_of_the_user_api_is_published(client: AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    operations = {(path, method) for path, item in schema["paths"].items() for method in item}
    assert operations >= {
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
    login = schema["paths"]["/api/v1/auth/login"]["post"]["responses"]
    assert {"401", "422", "429"} <= set(login)
