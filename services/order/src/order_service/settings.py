"""Settings of the order service."""

from pydantic_settings import SettingsConfigDict

from meshmart_common.settings import ServiceSettings


class Settings(ServiceSettings):
    """order service settings (env: the shared names; see the README table)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    service_name: str = "order"
    port: int = 8003
