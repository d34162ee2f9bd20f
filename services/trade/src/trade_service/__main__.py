"""`python -m trade_service migrate|seed|serve`."""

from pathlib import Path

from meshmart_common.cli import run_cli
from trade_service.domain.demo_data import seed
from trade_service.settings import Settings

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def main() -> int:
    """Run the service CLI."""
    return run_cli(
        settings_factory=Settings,
        app_path="trade_service.main:app_factory",
        migrations_dir=MIGRATIONS,
        seeder=seed,
    )


if __name__ == "__main__":
    raise SystemExit(main())
