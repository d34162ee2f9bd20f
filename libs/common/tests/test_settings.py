"""Settings: embedded defaults, environment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshmart_common.settings import Environment, ServiceSettings, default_var_dir

REPO_ROOT = Path(__file__).resolve().parents[3]
ENV_NAMES = ("DATABASE_URL", "DATABASE_READ_URL", "SERVICE_NAME", "VAR_DIR", "ENVIRONMENT", "PORT")


class OrderLikeSettings(ServiceSettings):
    """A service's settings, as each service declares them."""

    service_name: str = "order"
    port: int = 8003


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No stray variables or .env file from the developer's shell."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_default_database_is_a_sqlite_file_named_after_the_service(tmp_path: Path) -> None:
    settings = OrderLikeSettings(var_dir=tmp_path)
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path}/order.db"
    assert settings.database_read_url is None


def test_default_var_dir_is_var_at_the_repository_root() -> None:
    assert default_var_dir() == REPO_ROOT / "var"
    assert OrderLikeSettings().database_url == f"sqlite+aiosqlite:///{REPO_ROOT}/var/order.db"


def test_environment_overrides_the_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql+aiomysql://app:pw@db:3306/orders")
    monkeypatch.setenv("DATABASE_READ_URL", "mysql+aiomysql://app:pw@replica:3306/orders")
    settings = OrderLikeSettings()
    assert settings.database_url == "mysql+aiomysql://app:pw@db:3306/orders"
    assert settings.database_read_url == "mysql+aiomysql://app:pw@replica:3306/orders"


def test_environment_overrides_other_fields(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PORT", "9000")
    monkeypatch.setenv("environment", "production")
    monkeypatch.setenv("VAR_DIR", str(tmp_path / "data"))
    settings = OrderLikeSettings()
    assert settings.port == 9000
    assert settings.environment is Environment.PRODUCTION
    assert not settings.is_development
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path}/data/order.db"


def test_dotenv_file_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("JWT_AUDIENCE=shop\nUNRELATED_THING=1\n")
    assert OrderLikeSettings().jwt_audience == "shop"


@pytest.mark.parametrize(
    ("environment", "development"),
    [(Environment.DEVELOPMENT, True), (Environment.TEST, True), (Environment.PRODUCTION, False)],
)
def test_only_development_and_test_count_as_development(
    environment: Environment, development: bool
) -> None:
    assert OrderLikeSettings(environment=environment).is_development is development


@pytest.mark.parametrize("port", [0, 65536])
def test_port_must_be_a_tcp_port(port: int) -> None:
    with pytest.raises(ValueError, match="port"):
        OrderLikeSettings(port=port)
