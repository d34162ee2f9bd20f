"""Settings of the user service."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from meshmart_common.messaging.settings import MessagingSettings
from meshmart_common.settings import Environment, ServiceSettings

DEVELOPMENT_ADMIN_PASSWORD = "meshmart-admin"  # noqa: S105 - the documented development default
# OWASP's floor for argon2id with one pass less than our default: 19 MiB.
MIN_PRODUCTION_ARGON2_MEMORY_KIB = 19_456


class ConfigurationError(RuntimeError):
    """The service cannot start with these settings."""


class Settings(ServiceSettings, MessagingSettings):
    """user service settings (env: the upper-case field names; see the README table).

    The messaging fields (BUS_BACKEND, LOCAL_BUS_PATH, OUTBOX_*) come from
    MessagingSettings; docs/messaging.md lists them.
    """

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    service_name: str = "user"
    port: int = 8001

    # Signing key: the PEM itself (JWT_PRIVATE_KEY) or a file holding it
    # (JWT_PRIVATE_KEY_FILE). Development and test generate one under var/keys/.
    jwt_private_key: SecretStr | None = None
    jwt_private_key_file: Path | None = None
    access_token_ttl_seconds: int = Field(default=900, ge=30, le=86_400)
    refresh_token_ttl_seconds: int = Field(default=30 * 86_400, ge=60, le=365 * 86_400)

    # argon2id cost; the defaults are argon2-cffi's (RFC 9106 low-memory profile).
    argon2_time_cost: int = Field(default=3, ge=1, le=20)
    argon2_memory_cost: int = Field(default=65_536, ge=8, le=4_194_304, description="KiB")
    argon2_parallelism: int = Field(default=4, ge=1, le=64)
    # Each hash holds argon2_memory_cost KiB while it runs; this bounds the total.
    argon2_max_concurrency: int = Field(default=4, ge=1, le=256)

    login_max_failures: int = Field(default=5, ge=1, le=100)
    login_lockout_base_seconds: int = Field(default=30, ge=1, le=86_400)
    login_lockout_max_seconds: int = Field(default=900, ge=1, le=86_400)
    # Per client address and per process, on top of the per-account lockout; a
    # live setting (Consul KV). Generous: many users can share one NAT address.
    rate_limit_login_per_minute: int = Field(
        default=60, ge=0, le=100_000, description="logins per minute per client IP; 0: no limit"
    )

    max_addresses_per_user: int = Field(default=20, ge=1, le=1000)

    admin_email: str = Field(default="admin@meshmart.local", min_length=3, max_length=254)
    admin_password: SecretStr = Field(
        default=SecretStr(DEVELOPMENT_ADMIN_PASSWORD), min_length=8, max_length=128
    )

    @field_validator("admin_email")
    @classmethod
    def _normalise_admin_email(cls, value: str) -> str:
        value = value.strip().lower()
        if "@" not in value:
            raise ValueError("ADMIN_EMAIL must be an email address")
        return value

    @model_validator(mode="after")
    def _refuse_insecure_production(self) -> Self:
        if self.jwt_private_key is not None and self.jwt_private_key_file is not None:
            raise ValueError("set JWT_PRIVATE_KEY or JWT_PRIVATE_KEY_FILE, not both")
        if self.login_lockout_max_seconds < self.login_lockout_base_seconds:
            raise ValueError("LOGIN_LOCKOUT_MAX_SECONDS must be >= LOGIN_LOCKOUT_BASE_SECONDS")
        if self.environment is not Environment.PRODUCTION:
            return self
        if self.jwt_private_key is None and self.jwt_private_key_file is None:
            raise ValueError(
                "production needs a JWT signing key: set JWT_PRIVATE_KEY (PEM) or "
                "JWT_PRIVATE_KEY_FILE (path to a PEM RSA private key)"
            )
        if self.admin_password.get_secret_value() == DEVELOPMENT_ADMIN_PASSWORD:
            raise ValueError(
                "production refuses the development ADMIN_PASSWORD: set ADMIN_PASSWORD "
                "to a secret of your own"
            )
        if self.argon2_memory_cost < MIN_PRODUCTION_ARGON2_MEMORY_KIB:
            raise ValueError(
                f"production needs ARGON2_MEMORY_COST >= {MIN_PRODUCTION_ARGON2_MEMORY_KIB} KiB"
            )
        return self

    @property
    def signing_key_path(self) -> Path:
        """Where development and test keep their generated signing key."""
        return self.var_dir / "keys" / "jwt-signing-key.pem"
