"""`python -m user_service migrate|seed|serve`."""

from pathlib import Path

from meshmart_common.cli import run_cli
from user_service.domain.seed import seed_accounts
from user_service.settings import Settings

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def main() -> int:
    """Run the service CLI."""
    return run_cli(
        settings_factory=Settings,
        app_path="user_service.main:app_factory",
        migrations_dir=MIGRATIONS,
        seeder=seed_accounts,
    )


if __name__ == "__main__":
    raise SystemExit(main())
