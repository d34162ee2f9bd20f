"""Settings of the trade service."""

from pydantic_settings import SettingsConfigDict

from meshmart_common.settings import ServiceSettings


class Settings(ServiceSettings):
    """trade service settings (env: the shared names; see the README table)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    service_name: str = "trade"
    port: int = 8004
