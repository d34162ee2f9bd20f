"""`python -m product_service migrate|seed|serve`."""

from pathlib import Path

from meshmart_common.cli import run_cli
from product_service.domain.demo_catalogue import seed
from product_service.settings import Settings

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def main() -> int:
    """Run the service CLI."""
    return run_cli(
        settings_factory=Settings,
        app_path="product_service.main:app_factory",
        migrations_dir=MIGRATIONS,
        seeder=seed,
    )


if __name__ == "__main__":
    raise SystemExit(main())
