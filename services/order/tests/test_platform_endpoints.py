"""The order service starts, migrates and answers the platform endpoints."""

from pathlib import Path

from meshmart_common.testing import PlatformContract


class TestPlatform(PlatformContract):
    service_name = "order"
    title = "MeshMart order service"
    migrations_dir = Path(__file__).resolve().parents[1] / "migrations"
