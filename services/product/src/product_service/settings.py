"""Settings of the product service."""

from pydantic_settings import SettingsConfigDict

from meshmart_common.messaging.settings import MessagingSettings
from meshmart_common.settings import ServiceSettings


class Settings(ServiceSettings, MessagingSettings):
    """product service settings (env: the shared names and the messaging ones; see the README)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    service_name: str = "product"
    port: int = 8002
