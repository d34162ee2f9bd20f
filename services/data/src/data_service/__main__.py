"""`python -m data_service migrate|seed|serve`."""

from pathlib import Path

from data_service.settings import Settings
from meshmart_common.cli import run_cli

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def main() -> int:
    """Run the service CLI."""
    return run_cli(
        settings_factory=Settings,
        app_path="data_service.main:app_factory",
        migrations_dir=MIGRATIONS,
    )


if __name__ == "__main__":
    raise SystemExit(main())
