"""Settings of the data service."""

from pydantic_settings import SettingsConfigDict

from meshmart_common.messaging.settings import MessagingSettings
from meshmart_common.settings import ServiceSettings


class Settings(ServiceSettings, MessagingSettings):
    """data service settings (env: the shared names; see the README table).

    The messaging fields (BUS_BACKEND, LOCAL_BUS_PATH, CONSUMER_*,
    INBOX_RETENTION_DAYS) come from MessagingSettings; docs/messaging.md lists them.
    """

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    service_name: str = "data"
    port: int = 8005
