"""Settings of the order service."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from meshmart_common.messaging.settings import MessagingSettings
from meshmart_common.settings import ServiceSettings


class Settings(ServiceSettings, MessagingSettings):
    """order service settings (env: the shared names, the messaging ones of
    docs/messaging.md, and the ones below; see the README)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    service_name: str = "order"
    port: int = 8003

    product_url: str = Field(
        default="http://127.0.0.1:8002", description="base URL of the product service"
    )
    trade_url: str = Field(
        default="http://127.0.0.1:8004", description="base URL of the trade service"
    )
    upstream_timeout_seconds: float = Field(
        default=3.0, gt=0, le=60, description="deadline of one call to product or trade"
    )
    payment_timeout_seconds: int = Field(
        default=900, ge=1, le=7 * 24 * 3600, description="time to pay once stock and trade hold"
    )
    # Per user and per process (each replica counts on its own); a live setting (Consul KV).
    rate_limit_checkout_per_minute: int = Field(
        default=30, ge=0, le=100_000, description="checkouts per minute per user; 0: no limit"
    )
    max_cart_lines: int = Field(default=50, ge=1, le=500, description="products in one cart")
    max_quantity_per_line: int = Field(
        default=99, ge=1, le=10_000, description="units of one product in a cart or order"
    )
