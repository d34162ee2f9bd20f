"""The shared command line: migrate, seed, serve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import uvicorn
from sqlalchemy import Column, Integer, MetaData, String, Table, text

from meshmart_common.cli import run_cli
from meshmart_common.db import Database, naming_metadata
from meshmart_common.settings import ServiceSettings
from meshmart_common.testing import migrations_diff

ENV_PY = """
from sqlalchemy import Column, Integer, String, Table

from meshmart_common.db import naming_metadata, run_migrations_env

metadata = naming_metadata()
Table(
    "gadgets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("label", String(50), nullable=False, unique=True),
)
run_migrations_env(metadata)
"""

REVISION_PY = """
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gadgets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=50), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gadgets")),
        sa.UniqueConstraint("label", name=op.f("uq_gadgets_label")),
    )


def downgrade() -> None:
    op.drop_table("gadgets")
"""


def gadgets_metadata() -> MetaData:
    metadata = naming_metadata()
    Table(
        "gadgets",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("label", String(50), nullable=False, unique=True),
    )
    return metadata


@pytest.fixture
def migrations_dir(tmp_path: Path) -> Path:
    """A one-revision Alembic folder whose env.py is the shared run_migrations_env."""
    folder = tmp_path / "migrations"
    (folder / "versions").mkdir(parents=True)
    (folder / "env.py").write_text(ENV_PY)
    (folder / "versions" / "0001_gadgets.py").write_text(REVISION_PY)
    return folder


def cli(settings: ServiceSettings, migrations_dir: Path, *argv: str, **kwargs: Any) -> int:
    return run_cli(
        settings_factory=lambda: settings,
        app_path="gadget_service.main:app_factory",
        migrations_dir=migrations_dir,
        argv=list(argv),
        **kwargs,
    )


def test_migrate_applies_the_migrations_and_matches_the_models(
    empty_database_url: str, migrations_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = ServiceSettings(service_name="gadgets", database_url=empty_database_url)
    assert cli(settings, migrations_dir, "migrate") == 0
    output = capsys.readouterr().out
    assert output.startswith("gadgets: migrated ")
    assert "root@" not in output  # credentials stay out of the output
    assert migrations_diff(migrations_dir, empty_database_url, gadgets_metadata()) == []


def test_seed_runs_the_seeder_and_prints_its_message(
    database_url: str, migrations_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async def seeder(settings: ServiceSettings, database: Database) -> str | None:
        async with database.session() as session:
            await session.execute(text("INSERT INTO widgets (name) VALUES ('demo')"))
        return "seeded 1 widget"

    settings = ServiceSettings(service_name="widgets", database_url=database_url)
    assert cli(settings, migrations_dir, "seed", seeder=seeder) == 0
    assert capsys.readouterr().out == "widgets: seeded 1 widget\n"


def test_seed_without_a_seeder_says_so(
    tmp_path: Path, migrations_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = ServiceSettings(service_name="gadgets", var_dir=tmp_path)
    assert cli(settings, migrations_dir, "seed") == 0
    assert capsys.readouterr().out == "gadgets: no demo data to seed\n"


def test_serve_runs_uvicorn_with_the_settings(
    tmp_path: Path, migrations_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: calls.append((a, k)))
    settings = ServiceSettings(service_name="gadgets", var_dir=tmp_path, port=8123)
    assert cli(settings, migrations_dir, "serve") == 0
    assert cli(settings, migrations_dir, "serve", "--host", "10.1.2.3", "--port", "9000") == 0
    (args, first), (_, second) = calls
    assert args == ("gadget_service.main:app_factory",)
    assert (first["host"], first["port"], first["factory"]) == ("127.0.0.1", 8123, True)
    assert (second["host"], second["port"]) == ("10.1.2.3", 9000)


def test_unknown_command_exits_with_usage(tmp_path: Path, migrations_dir: Path) -> None:
    settings = ServiceSettings(var_dir=tmp_path)
    with pytest.raises(SystemExit) as raised:
        cli(settings, migrations_dir, "dance")
    assert raised.value.code == 2
