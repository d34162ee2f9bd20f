"""Settings of the user service."""

from pydantic_settings import SettingsConfigDict

from meshmart_common.settings import ServiceSettings


class Settings(ServiceSettings):
    """user service settings (env: the shared names; see the README table)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    service_name: str = "user"
    port: int = 8001
