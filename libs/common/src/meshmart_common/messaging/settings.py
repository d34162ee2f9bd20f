"""Messaging settings: the env-facing fields and the runtime values they produce.

:class:`MessagingSettings` is a pydantic-settings mixin a service adds to its
settings class (``class Settings(ServiceSettings, MessagingSettings)``); its
fields are read from the upper-case environment variables like every other
setting. :class:`RelaySettings` and :class:`ConsumerSettings` are the plain
values the outbox relay and the consumer runners take (tests build them
directly with small durations).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from meshmart_common.messaging.backoff import Backoff


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """How the outbox relay polls, claims, retries and prunes."""

    poll_interval: timedelta = timedelta(milliseconds=200)
    batch_size: int = 50
    # A relay that dies mid-batch leaves its rows claimed; another replica takes
    # them over once the claim has expired.
    claim_timeout: timedelta = timedelta(seconds=30)
    retry_base: timedelta = timedelta(milliseconds=500)
    retry_cap: timedelta = timedelta(seconds=30)
    # Sent rows are kept this long (to see what was published), then pruned.
    retention: timedelta = timedelta(hours=24)
    prune_interval: timedelta = timedelta(minutes=5)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.poll_interval <= timedelta(0) or self.claim_timeout <= timedelta(0):
            raise ValueError("poll_interval and claim_timeout must be positive")

    @property
    def backoff(self) -> Backoff:
        """Backoff between failed publish rounds."""
        return Backoff(self.retry_base, self.retry_cap)


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """How a consumer runner receives, retries and dead-letters."""

    # Delivery number at which a still-failing event is parked as a dead letter.
    max_attempts: int = 5
    retry_base: timedelta = timedelta(seconds=1)
    retry_cap: timedelta = timedelta(minutes=5)
    # How long a received message stays hidden from the group while its handler
    # runs; a crashed process's messages come back after this.
    invisible_duration: timedelta = timedelta(seconds=30)
    # Long-poll: how long one receive waits for messages.
    wait: timedelta = timedelta(seconds=1)
    batch_size: int = 8
    # Backoff while the bus itself is unavailable.
    bus_retry_base: timedelta = timedelta(milliseconds=500)
    bus_retry_cap: timedelta = timedelta(seconds=30)
    # Inbox rows only need to outlive any redelivery of their event.
    inbox_retention: timedelta = timedelta(days=7)
    prune_interval: timedelta = timedelta(minutes=10)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 1 <= self.batch_size <= 32:
            raise ValueError("batch_size must be between 1 and 32")
        if self.invisible_duration <= timedelta(0):
            raise ValueError("invisible_duration must be positive")

    @property
    def retry_backoff(self) -> Backoff:
        """Backoff between deliveries of a failing event."""
        return Backoff(self.retry_base, self.retry_cap)

    @property
    def bus_backoff(self) -> Backoff:
        """Backoff while receive fails."""
        return Backoff(self.bus_retry_base, self.bus_retry_cap)


class MessagingSettings(BaseSettings):
    """Messaging fields of a service's settings (env: the upper-case field names).

    A mixin: ``class Settings(ServiceSettings, MessagingSettings)``.
    """

    bus_backend: Literal["local", "rocketmq"] = "local"
    # Default: $VAR_DIR/bus.db, shared by every service process on the machine.
    local_bus_path: Path | None = None
    local_bus_retention_hours: float = Field(default=72.0, gt=0)
    # BUS_BACKEND=rocketmq: the gRPC proxy (host:port) and optional ACL credentials.
    rocketmq_endpoints: str = "127.0.0.1:8081"
    rocketmq_namespace: str = ""
    rocketmq_access_key: str = ""
    rocketmq_secret_key: SecretStr = SecretStr("")

    outbox_poll_interval_ms: int = Field(default=200, ge=10, le=60_000)
    outbox_batch_size: int = Field(default=50, ge=1, le=1000)
    outbox_retention_hours: float = Field(default=24.0, ge=0)

    # Reconnect backoff while the bus is unreachable (relay and consumers), capped here.
    bus_retry_max_seconds: float = Field(default=30.0, ge=1, le=3600)

    consumer_max_attempts: int = Field(default=5, ge=1, le=100)
    consumer_retry_base_seconds: float = Field(default=1.0, gt=0)
    consumer_retry_max_seconds: float = Field(default=300.0, gt=0)
    consumer_invisible_seconds: float = Field(default=30.0, ge=1)
    inbox_retention_days: float = Field(default=7.0, gt=0)

    def local_bus_file(self, var_dir: Path) -> Path:
        """Where the local bus lives: LOCAL_BUS_PATH, else ``var_dir``/bus.db."""
        return self.local_bus_path or var_dir / "bus.db"

    def relay_settings(self) -> RelaySettings:
        """The outbox relay's runtime values."""
        return RelaySettings(
            poll_interval=timedelta(milliseconds=self.outbox_poll_interval_ms),
            batch_size=self.outbox_batch_size,
            retry_cap=timedelta(seconds=self.bus_retry_max_seconds),
            retention=timedelta(hours=self.outbox_retention_hours),
        )

    def consumer_settings(self) -> ConsumerSettings:
        """The consumer runners' runtime values."""
        base = timedelta(seconds=self.consumer_retry_base_seconds)
        return ConsumerSettings(
            max_attempts=self.consumer_max_attempts,
            retry_base=base,
            retry_cap=max(base, timedelta(seconds=self.consumer_retry_max_seconds)),
            invisible_duration=timedelta(seconds=self.consumer_invisible_seconds),
            inbox_retention=timedelta(days=self.inbox_retention_days),
            bus_retry_cap=timedelta(seconds=self.bus_retry_max_seconds),
        )
