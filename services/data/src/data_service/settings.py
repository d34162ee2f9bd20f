"""Settings of the data service."""

from pydantic_settings import SettingsConfigDict

from meshmart_common.settings import ServiceSettings


class Settings(ServiceSettings):
    """data service settings (env: the shared names; see the README table)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    service_name: str = "data"
    port: int = 8005
