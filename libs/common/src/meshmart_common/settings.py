"""Settings shared by every service (pydantic-settings, read from env and .env)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal, Self

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
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

    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", case_sensitive=False, populate_by_name=True
    )

    service_name: str = "meshmart"
    service_version: str = "0.1.0"
    environment: Environment = Environment.DEVELOPMENT
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = "INFO"
    # console: one human-readable line per event (make run); json: one JSON
    # object per line with request and trace ids (compose, cluster).
    log_format: Literal["console", "json"] = "console"
    # Proxies whose X-Forwarded-For is believed (comma-separated IPs/CIDRs, or "*");
    # empty: none, the TCP peer is the client.
    forwarded_allow_ips: str = ""
    var_dir: Path = Field(default_factory=default_var_dir)

    database_url: str = ""
    database_read_url: str | None = None
    database_echo: bool = False
    database_pool_size: int = Field(default=10, ge=1, le=200)

    jwks_url: str = "http://127.0.0.1:8001/.well-known/jwks.json"
    jwt_issuer: str = "meshmart-user"
    jwt_audience: str = "meshmart"
    jwks_cache_seconds: int = Field(default=300, ge=0)

    # Discovery (meshmart_common.discovery). static: <SERVICE>_URL settings, and
    # nothing talks to Consul; consul: self-registration, health-filtered
    # discovery and live configuration from Consul KV.
    discovery_backend: Literal["static", "consul"] = "static"
    consul_http_addr: str = "http://127.0.0.1:8500"
    # CONSUL_HTTP_TOKEN, the name Consul's own tools read (CONSUL_TOKEN works too).
    consul_token: SecretStr = Field(
        default=SecretStr(""), validation_alias=AliasChoices("consul_http_token", "consul_token")
    )
    # The host or IP other services reach this instance at (never a URL);
    # empty: HOST, or this machine's hostname when HOST is a wildcard address.
    advertise_address: str = ""
    consul_check_interval_seconds: float = Field(default=10.0, gt=0, le=3600)
    consul_check_timeout_seconds: float = Field(default=2.0, gt=0, le=300)
    consul_deregister_after_seconds: int = Field(default=60, ge=60, le=86_400)
    consul_wait_seconds: int = Field(default=30, ge=1, le=600)
    load_balancer: Literal["round_robin", "least_outstanding"] = "round_robin"

    # Resilient service-to-service calls (meshmart_common.service_client).
    upstream_retries: int = Field(default=2, ge=0, le=5)
    upstream_retry_budget_ratio: float = Field(default=0.2, ge=0, le=1)
    breaker_failure_threshold: int = Field(default=5, ge=1, le=1000)
    breaker_cooldown_seconds: float = Field(default=5.0, gt=0, le=3600)

    # Live settings: Consul KV can override these without a restart (live_config).
    feature_flags: dict[str, bool] = Field(default_factory=dict)

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
