"""Settings shared by every service (pydantic-settings, read from env and .env)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Environment(StrEnum):
    """Where a service runs; secrets only have working defaults in development and test."""

    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


def default_var_dir() -> Path:
    """The var/ folder at the repository root (or the current directory when installed)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").exists() and (parent / "libs").is_dir():
            return parent / "var"
    return Path.cwd() / "var"


class ServiceSettings(BaseSettings):
    """Settings every MeshMart service shares; each service subclasses it.

    Environment variable names are the upper-case field names (``DATABASE_URL``,
    ``JWKS_URL``, ...), so one process runs one service.
    """

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    service_name: str = "meshmart"
    service_version: str = "0.1.0"
    environment: Environment = Environment.DEVELOPMENT
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = "INFO"
    var_dir: Path = Field(default_factory=default_var_dir)

    database_url: str = ""
    database_read_url: str | None = None
    database_echo: bool = False
    database_pool_size: int = Field(default=10, ge=1, le=200)

    jwks_url: str = "http://127.0.0.1:8001/.well-known/jwks.json"
    jwt_issuer: str = "meshmart-user"
    jwt_audience: str = "meshmart"
    jwks_cache_seconds: int = Field(default=300, ge=0)

    @field_validator("port")
    @classmethod
    def _port_in_range(cls, value: int) -> int:
        # Services redeclare ``port: int = 8003``, which drops the Field bounds
        # above; this validator is inherited, so every service still checks it.
        if not 1 <= value <= 65535:
            raise ValueError("port must be between 1 and 65535")
        return value

    @model_validator(mode="after")
    def _default_database(self) -> Self:
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.var_dir / (self.service_name + '.db')}"
        return self

    @property
    def is_development(self) -> bool:
        """True where throw-away secrets may be generated (development and test)."""
        return self.environment in (Environment.DEVELOPMENT, Environment.TEST)
