"""Backoff delays and the messaging settings a service mixes into its own."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from meshmart_common.messaging.backoff import Backoff
from meshmart_common.messaging.settings import ConsumerSettings, MessagingSettings, RelaySettings
from meshmart_common.settings import ServiceSettings


def test_backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() -> None:
    low = Backoff(timedelta(seconds=1), timedelta(seconds=10), random=lambda: 0.0)
    high = Backoff(timedelta(seconds=1), timedelta(seconds=10), random=lambda: 0.999999)

    assert [low.delay(n).total_seconds() for n in (1, 2, 3, 4, 5, 50)] == [
        0.5,
        1.0,
        2.0,
        4.0,
        5.0,
        5.0,
    ]
    assert [round(high.delay(n).total_seconds(), 3) for n in (1, 2, 3, 4, 5, 1000)] == [
        1.0,
        2.0,
        4.0,
        8.0,
        10.0,
        10.0,
    ]


def test_backoff_jitter_spreads_retries() -> None:
    backoff = Backoff(timedelta(seconds=1), timedelta(seconds=60))
    delays = {backoff.delay(3) for _ in range(50)}
    assert len(delays) > 1
    assert all(timedelta(seconds=2) <= d <= timedelta(seconds=4) for d in delays)


def test_backoff_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="positive"):
        Backoff(timedelta(0), timedelta(seconds=1))
    with pytest.raises(ValueError, match="cap"):
        Backoff(timedelta(seconds=2), timedelta(seconds=1))


def test_runtime_settings_validate_their_values() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        ConsumerSettings(max_attempts=0)
    with pytest.raises(ValueError, match="batch_size"):
        ConsumerSettings(batch_size=33)
    with pytest.raises(ValueError, match="batch_size"):
        RelaySettings(batch_size=0)


class ShopSettings(ServiceSettings, MessagingSettings):
    service_name: str = "shop"


def test_messaging_settings_mix_into_service_settings_and_read_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CONSUMER_MAX_ATTEMPTS", "7")
    monkeypatch.setenv("OUTBOX_POLL_INTERVAL_MS", "150")
    monkeypatch.setenv("CONSUMER_RETRY_BASE_SECONDS", "0.5")
    monkeypatch.setenv("CONSUMER_RETRY_MAX_SECONDS", "60")
    monkeypatch.setenv("BUS_RETRY_MAX_SECONDS", "5")
    settings = ShopSettings(var_dir=tmp_path)

    consumer = settings.consumer_settings()
    relay = settings.relay_settings()

    assert consumer.max_attempts == 7
    assert consumer.retry_base == timedelta(seconds=0.5)
    assert consumer.retry_cap == timedelta(seconds=60)
    assert consumer.invisible_duration == timedelta(seconds=30)
    assert relay.poll_interval == timedelta(milliseconds=150)
    assert relay.retention == timedelta(hours=24)
    assert relay.retry_cap == consumer.bus_retry_cap == timedelta(seconds=5)
    assert settings.bus_backend == "local"
    assert settings.local_bus_file(settings.var_dir) == tmp_path / "bus.db"
    assert settings.database_url.endswith("shop.db")


def test_local_bus_path_can_be_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LOCAL_BUS_PATH", str(tmp_path / "elsewhere.db"))
    settings = ShopSettings(var_dir=tmp_path / "var")
    assert settings.local_bus_file(settings.var_dir) == tmp_path / "elsewhere.db"


def test_invalid_messaging_settings_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUMER_MAX_ATTEMPTS", "0")
    with pytest.raises(ValueError, match="consumer_max_attempts"):
        ShopSettings()
