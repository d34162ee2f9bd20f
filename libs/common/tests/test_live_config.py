"""Live configuration: KV overrides validated like the settings, their sources, the admin view."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from pydantic import Field, SecretStr, field_validator

from meshmart_common.app import LifespanHook, create_app
from meshmart_common.auth import SigningKey, StaticKeySource, TokenVerifier, jwks_document
from meshmart_common.errors import PROBLEM_JSON
from meshmart_common.live_config import (
    COMMON_LIVE_KEYS,
    EffectiveSetting,
    LiveConfig,
    LiveValueRefused,
    RejectedValue,
    consul_location,
    live_config_lifespan,
)
from meshmart_common.messaging.backoff import Backoff
from meshmart_common.settings import ServiceSettings
from meshmart_common.testing import TokenMaker
from tests.consul_double import ConsulDouble

SERVICE = "meshmart/config/probe/"
SHARED = "meshmart/config/shared/"
SHARED_SOURCE = f"consul:{SHARED}payment_timeout_seconds"
LIVE_KEYS = (*COMMON_LIVE_KEYS, "payment_timeout_seconds", "rate_limit_checkout_per_minute")


class ProbeSettings(ServiceSettings):
    """A service with the kinds of live settings the real ones have."""

    service_name: str = "probe"
    payment_timeout_seconds: int = Field(default=900, ge=1, le=7 * 24 * 3600)
    rate_limit_checkout_per_minute: int = Field(default=30, ge=0, le=100_000)
    api_secret: SecretStr = SecretStr("hush")
    nickname: str = "probe"

    @field_validator("nickname")
    @classmethod
    def _no_spaces(cls, value: str) -> str:
        if " " in value:
            raise ValueError("nickname must not contain spaces")
        return value


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ProbeSettings:
    for name in ("LOG_LEVEL", "PAYMENT_TIMEOUT_SECONDS", "RATE_LIMIT_CHECKOUT_PER_MINUTE"):
        monkeypatch.delenv(name, raising=False)
    return ProbeSettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}")


@pytest.fixture(autouse=True)
def root_log_level() -> Iterator[None]:
    """Live log levels change the root logger: put it back after each test."""
    loggers = [logging.getLogger(), logging.getLogger("uvicorn.error")]
    before = [logger.level for logger in loggers]
    yield
    for logger, level in zip(loggers, before, strict=True):
        logger.setLevel(level)


@pytest.fixture
def live(settings: ProbeSettings) -> LiveConfig:
    return LiveConfig(settings, LIVE_KEYS)


def source_of(live: LiveConfig, key: str) -> EffectiveSetting:
    [found] = [item for item in live.effective() if item.key == key]
    return found


# --- values, validation, precedence ------------------------------------------------


def test_a_valid_kv_value_is_applied_to_the_settings_with_its_consul_source(
    live: LiveConfig, settings: ProbeSettings
) -> None:
    changed = live.replace(SERVICE, {SERVICE + "payment_timeout_seconds": b"60"})

    assert changed == ["payment_timeout_seconds"]
    assert settings.payment_timeout_seconds == 60
    assert source_of(live, "payment_timeout_seconds") == EffectiveSetting(
        "payment_timeout_seconds", 60, "consul:meshmart/config/probe/payment_timeout_seconds"
    )


def test_an_invalid_value_is_refused_logged_listed_and_the_old_value_kept(
    live: LiveConfig, settings: ProbeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    live.replace(SERVICE, {SERVICE + "payment_timeout_seconds": b"60"})

    with caplog.at_level(logging.WARNING, logger="meshmart.live_config"):
        changed = live.replace(SERVICE, {SERVICE + "payment_timeout_seconds": b"0"})

    assert changed == []
    assert settings.payment_timeout_seconds == 60
    assert source_of(live, "payment_timeout_seconds").value == 60
    assert live.rejected() == [
        RejectedValue(
            key="payment_timeout_seconds",
            kv_key=SERVICE + "payment_timeout_seconds",
            value="0",
            reason="Input should be greater than or equal to 1",
        )
    ]
    [line] = [
        r.getMessage()
        for r in caplog.records
        if r.name == "meshmart.live_config" and r.levelno >= logging.WARNING
    ]
    assert "payment_timeout_seconds refused" in line
    assert "keeping 60" in line
    assert "greater than or equal to 1" in line


def test_a_refused_first_value_leaves_the_default_in_effect(
    live: LiveConfig, settings: ProbeSettings
) -> None:
    live.replace(SERVICE, {SERVICE + "rate_limit_checkout_per_minute": b"lots"})

    assert settings.rate_limit_checkout_per_minute == 30
    assert source_of(live, "rate_limit_checkout_per_minute").source == "default"
    [rejected] = live.rejected()
    assert (
        rejected.reason == "Input should be a valid integer, unable to parse string as an integer"
    )


def test_a_fixed_value_clears_its_refusal(live: LiveConfig, settings: ProbeSettings) -> None:
    live.replace(SERVICE, {SERVICE + "payment_timeout_seconds": b"-5"})
    live.replace(SERVICE, {SERVICE + "payment_timeout_seconds": b"120"})

    assert settings.payment_timeout_seconds == 120
    assert live.rejected() == []


@pytest.mark.parametrize(
    ("key", "text", "expected"),
    [
        ("payment_timeout_seconds", "30", 30),
        ("payment_timeout_seconds", ' "45" ', 45),
        (
            "feature_flags",
            '{"new_checkout": true, "dark_mode": false}',
            {"new_checkout": True, "dark_mode": False},
        ),
        ("log_level", "DEBUG", "DEBUG"),
        ("log_level", '"warning"', "WARNING"),
        ("log_level", " error ", "ERROR"),
    ],
)
def test_values_are_json_or_else_the_raw_text(
    live: LiveConfig, key: str, text: str, expected: Any
) -> None:
    assert live.validate(key, text) == expected


@pytest.mark.parametrize(
    ("key", "text", "reason"),
    [
        ("log_level", "VERBOSE", "must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("log_level", "10", "must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("feature_flags", "new_checkout", "Input should be a valid dictionary"),
        ("feature_flags", '{"new_checkout": "maybe"}', "Input should be a valid boolean"),
        ("payment_timeout_seconds", "", "Input should be a valid integer"),
        ("payment_timeout_seconds", "999999999", "Input should be less than or equal to 604800"),
        ("database_url", "sqlite://", "not a live setting of this service"),
    ],
)
def test_invalid_values_are_refused_with_the_settings_own_reason(
    live: LiveConfig, key: str, text: str, reason: str
) -> None:
    with pytest.raises(LiveValueRefused) as refused:
        live.validate(key, text)
    assert refused.value.reason.startswith(reason)


def test_field_validators_of_the_settings_class_apply_too(settings: ProbeSettings) -> None:
    live = LiveConfig(settings, ["nickname"])
    live.replace(SERVICE, {SERVICE + "nickname": b"two words"})

    assert settings.nickname == "probe"
    assert live.rejected()[0].reason == "Value error, nickname must not contain spaces"


def test_text_that_is_not_utf8_is_refused(live: LiveConfig, settings: ProbeSettings) -> None:
    live.replace(SERVICE, {SERVICE + "payment_timeout_seconds": b"\xff\xfe"})

    assert settings.payment_timeout_seconds == 900
    assert live.rejected()[0].reason == "not UTF-8 text"


def test_the_service_key_beats_the_shared_key_and_deleting_falls_back_in_order(
    live: LiveConfig, settings: ProbeSettings
) -> None:
    live.replace(SHARED, {SHARED + "payment_timeout_seconds": b"300"})
    assert settings.payment_timeout_seconds == 300
    assert (
        source_of(live, "payment_timeout_seconds").source
        == f"consul:{SHARED}payment_timeout_seconds"
    )

    live.replace(SERVICE, {SERVICE + "payment_timeout_seconds": b"60"})
    assert settings.payment_timeout_seconds == 60
    live.replace(SHARED, {SHARED + "payment_timeout_seconds": b"301"})
    assert settings.payment_timeout_seconds == 60

    live.replace(SERVICE, {})  # the service key deleted
    assert settings.payment_timeout_seconds == 301
    assert (
        source_of(live, "payment_timeout_seconds").source
        == f"consul:{SHARED}payment_timeout_seconds"
    )

    live.replace(SHARED, {})  # 404: no keys at all
    assert settings.payment_timeout_seconds == 900
    assert source_of(live, "payment_timeout_seconds").source == "default"


def test_deleting_a_refused_key_forgets_the_refusal(live: LiveConfig) -> None:
    live.replace(SERVICE, {SERVICE + "payment_timeout_seconds": b"soon"})
    live.replace(SERVICE, {})

    assert live.rejected() == []


def test_the_environment_is_the_source_when_it_set_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAYMENT_TIMEOUT_SECONDS", "1200")
    settings = ProbeSettings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}")
    live = LiveConfig(settings, LIVE_KEYS)

    assert source_of(live, "payment_timeout_seconds") == EffectiveSetting(
        "payment_timeout_seconds", 1200, "environment"
    )
    assert source_of(live, "rate_limit_checkout_per_minute").source == "default"

    live.replace(SERVICE, {SERVICE + "payment_timeout_seconds": b"60"})
    live.replace(SERVICE, {})
    assert settings.payment_timeout_seconds == 1200
    assert source_of(live, "payment_timeout_seconds").source == "environment"


def test_keys_of_other_fields_and_folders_are_ignored(
    live: LiveConfig, settings: ProbeSettings
) -> None:
    changed = live.replace(
        SERVICE,
        {
            SERVICE: None,  # the "folder" key
            SERVICE + "database_url": b"sqlite:///elsewhere.db",
            SERVICE + "api_secret": b"stolen",
            SERVICE + "payment_timeout_seconds/extra": b"5",
        },
    )

    assert changed == []
    assert settings.api_secret.get_secret_value() == "hush"
    assert "elsewhere" not in settings.database_url
    assert live.rejected() == []


def test_secrets_and_unknown_fields_cannot_be_live(settings: ProbeSettings) -> None:
    with pytest.raises(ValueError, match="secret"):
        LiveConfig(settings, ["api_secret"])
    with pytest.raises(ValueError, match="not a field"):
        LiveConfig(settings, ["no_such_setting"])


def test_only_this_service_and_the_shared_prefix_are_accepted(live: LiveConfig) -> None:
    assert live.prefixes == (SERVICE, SHARED)
    with pytest.raises(ValueError, match="is not one of"):
        live.replace("meshmart/config/order/", {})


def test_a_log_level_change_relevels_the_loggers(live: LiveConfig) -> None:
    logging.getLogger().setLevel(logging.INFO)

    live.replace(SERVICE, {SERVICE + "log_level": b"DEBUG"})
    assert logging.getLogger().level == logging.DEBUG
    assert logging.getLogger("uvicorn.error").level == logging.DEBUG
    assert logging.getLogger("meshmart.orders").isEnabledFor(logging.DEBUG)

    live.replace(SERVICE, {SERVICE + "log_level": b"warning"})
    assert logging.getLogger().level == logging.WARNING

    live.replace(SERVICE, {})  # back to the settings' INFO
    assert logging.getLogger().level == logging.INFO


def test_the_change_hook_hears_each_change_and_its_failure_does_not_stop_others(
    settings: ProbeSettings,
) -> None:
    heard: list[tuple[str, Any]] = []

    def hook(key: str, value: Any) -> None:
        heard.append((key, value))
        if key == "feature_flags":
            raise RuntimeError("the hook broke")

    live = LiveConfig(settings, LIVE_KEYS, on_change=hook)
    live.replace(
        SERVICE,
        {
            SERVICE + "feature_flags": b'{"beta": true}',
            SERVICE + "payment_timeout_seconds": b"61",
        },
    )
    live.replace(SERVICE, {SERVICE + "feature_flags": b'{"beta": true}'})  # unchanged text

    assert heard == [
        ("feature_flags", {"beta": True}),
        ("payment_timeout_seconds", 61),
        ("payment_timeout_seconds", 900),
    ]
    assert settings.feature_flags == {"beta": True}


def test_the_same_value_from_another_source_changes_only_the_source(
    live: LiveConfig, settings: ProbeSettings
) -> None:
    live.replace(SHARED, {SHARED + "rate_limit_checkout_per_minute": b"30"})

    assert source_of(live, "rate_limit_checkout_per_minute").source.startswith("consul:")
    assert settings.rate_limit_checkout_per_minute == 30


@pytest.mark.parametrize(
    ("address", "location"),
    [
        ("http://127.0.0.1:8500", ("http", "127.0.0.1", 8500)),
        ("consul:8501", ("http", "consul", 8501)),
        ("https://consul.example", ("https", "consul.example", 443)),
        ("127.0.0.1", ("http", "127.0.0.1", 8500)),
    ],
)
def test_consul_addresses_with_or_without_a_scheme(
    address: str, location: tuple[str, str, int]
) -> None:
    assert consul_location(address) == location


def test_a_consul_address_must_be_http(settings: ProbeSettings) -> None:
    with pytest.raises(ValueError, match="CONSUL_HTTP_ADDR"):
        consul_location("ftp://consul:21")


# --- the lifespan hook and the admin API ---------------------------------------------------


def build_probe_app(
    settings: ProbeSettings, signing_key: SigningKey, *, hook: LifespanHook | None = None
) -> FastAPI:
    app = create_app(
        settings,
        title="probe",
        description="live config probe",
        # The hook under test (or none), instead of create_app's own.
        live_keys=None,
        lifespan_hooks=[hook] if hook is not None else [],
    )
    app.state.token_verifier = TokenVerifier(
        StaticKeySource(jwks_document([signing_key])), issuer="meshmart-user", audience="meshmart"
    )
    return app


async def started(app: FastAPI) -> AsyncIterator[AsyncClient]:
    async with LifespanManager(app, startup_timeout=30, shutdown_timeout=30) as manager:
        transport = ASGITransport(app=manager.app)
        async with AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


@pytest.fixture
def probe_app(settings: ProbeSettings, test_signing_key: SigningKey) -> FastAPI:
    return build_probe_app(settings, test_signing_key, hook=live_config_lifespan(LIVE_KEYS))


@pytest.fixture
async def probe_client(probe_app: FastAPI) -> AsyncIterator[AsyncClient]:
    async for http in started(probe_app):
        yield http


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_with_static_discovery_the_live_config_is_the_settings_and_no_watcher_runs(
    probe_app: FastAPI, probe_client: AsyncClient, settings: ProbeSettings
) -> None:
    live: LiveConfig = probe_app.state.live_config
    assert live.settings is settings is probe_app.state.settings
    assert probe_app.state.live_config_watcher is None
    assert {item.source for item in live.effective()} == {"default"}


async def test_admin_config_needs_a_token(probe_client: AsyncClient) -> None:
    response = await probe_client.get("/api/v1/admin/config")

    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM_JSON


async def test_admin_config_is_forbidden_to_customers(
    probe_client: AsyncClient, make_token: TokenMaker
) -> None:
    response = await probe_client.get("/api/v1/admin/config", headers=bearer(make_token(5)))

    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM_JSON


async def test_admin_config_lists_values_sources_and_refusals_but_no_secrets(
    probe_app: FastAPI, probe_client: AsyncClient, make_token: TokenMaker
) -> None:
    live: LiveConfig = probe_app.state.live_config
    live.replace(SHARED, {SHARED + "feature_flags": b'{"new_checkout": true}'})
    live.replace(
        SERVICE,
        {SERVICE + "payment_timeout_seconds": b"45", SERVICE + "log_level": b"LOUD"},
    )

    response = await probe_client.get(
        "/api/v1/admin/config", headers=bearer(make_token(1, "admin"))
    )

    assert response.status_code == 200, response.text
    assert response.json() == {
        "backend": "static",
        "synced": True,
        "watch_error": None,
        "settings": [
            {"key": "log_level", "value": "INFO", "source": "default"},
            {
                "key": "feature_flags",
                "value": {"new_checkout": True},
                "source": "consul:meshmart/config/shared/feature_flags",
            },
            {
                "key": "payment_timeout_seconds",
                "value": 45,
                "source": "consul:meshmart/config/probe/payment_timeout_seconds",
            },
            {"key": "rate_limit_checkout_per_minute", "value": 30, "source": "default"},
        ],
        "rejected": [
            {
                "key": "log_level",
                "kv_key": "meshmart/config/probe/log_level",
                "value": "LOUD",
                "reason": "must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL",
            }
        ],
    }
    assert "hush" not in response.text


async def test_admin_config_is_documented_with_its_problems(probe_client: AsyncClient) -> None:
    schema = (await probe_client.get("/openapi.json")).json()
    operation = schema["paths"]["/api/v1/admin/config"]["get"]

    assert operation["description"]
    assert {"200", "401", "403"} <= set(operation["responses"])
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/LiveConfigRead"
    }
    assert operation["responses"]["403"]["content"] == {
        PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}
    }


async def test_admin_config_without_the_lifespan_hook_is_503(
    settings: ProbeSettings, test_signing_key: SigningKey, make_token: TokenMaker
) -> None:
    app = build_probe_app(settings, test_signing_key)
    async for http in started(app):
        response = await http.get("/api/v1/admin/config", headers=bearer(make_token(1, "admin")))
        assert response.status_code == 503


# --- watched in Consul KV (against the Consul double) ---------------------------------

FAST_RETRY = Backoff(timedelta(milliseconds=50), timedelta(milliseconds=200))


async def eventually(probe: Callable[[], bool], what: str, within: float = 20.0) -> None:
    """Poll ``probe`` until true; a generous deadline, no timing asserted."""
    deadline = time.monotonic() + within
    while not probe():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
def consul_settings(
    tmp_path: Path, consul_double: ConsulDouble, monkeypatch: pytest.MonkeyPatch
) -> ProbeSettings:
    for name in ("LOG_LEVEL", "PAYMENT_TIMEOUT_SECONDS", "CONSUL_HTTP_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return ProbeSettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}",
        discovery_backend="consul",
        consul_http_addr=consul_double.url,
        consul_wait_seconds=1,
    )


@pytest.fixture
def watched_app(consul_settings: ProbeSettings, test_signing_key: SigningKey) -> FastAPI:
    hook = live_config_lifespan(LIVE_KEYS, backoff=FAST_RETRY, initial_sync_seconds=10)
    return build_probe_app(consul_settings, test_signing_key, hook=hook)


@pytest.fixture
async def watched(watched_app: FastAPI) -> AsyncIterator[AsyncClient]:
    async for http in started(watched_app):
        yield http


async def test_kv_values_present_at_start_up_apply_before_the_service_serves(
    consul_double: ConsulDouble,
    watched_app: FastAPI,
    consul_settings: ProbeSettings,
    make_token: TokenMaker,
) -> None:
    consul_double.kv_put(SERVICE + "payment_timeout_seconds", "120")
    consul_double.kv_put(SHARED + "feature_flags", '{"new_checkout": true}')
    consul_double.kv_put("meshmart/config/order/payment_timeout_seconds", "5")  # not ours

    async for http in started(watched_app):
        assert consul_settings.payment_timeout_seconds == 120
        assert consul_settings.feature_flags == {"new_checkout": True}
        response = await http.get("/api/v1/admin/config", headers=bearer(make_token(1, "admin")))
        body = response.json()
        assert (body["backend"], body["synced"], body["watch_error"]) == ("consul", True, None)
        sources = {item["key"]: item["source"] for item in body["settings"]}
        assert sources["payment_timeout_seconds"] == f"consul:{SERVICE}payment_timeout_seconds"
        assert sources["feature_flags"] == f"consul:{SHARED}feature_flags"


async def test_a_kv_change_takes_effect_without_a_restart(
    consul_double: ConsulDouble, watched: AsyncClient, consul_settings: ProbeSettings
) -> None:
    logging.getLogger().setLevel(logging.INFO)

    consul_double.kv_put(SERVICE + "log_level", "DEBUG")
    consul_double.kv_put(SERVICE + "payment_timeout_seconds", "60")
    consul_double.kv_put(SHARED + "rate_limit_checkout_per_minute", "5")

    await eventually(
        lambda: (
            (
                consul_settings.log_level,
                consul_settings.payment_timeout_seconds,
                consul_settings.rate_limit_checkout_per_minute,
            )
            == ("DEBUG", 60, 5)
        ),
        "the three KV values to apply",
    )
    assert logging.getLogger().level == logging.DEBUG

    consul_double.kv_delete(SERVICE + "payment_timeout_seconds")
    await eventually(
        lambda: consul_settings.payment_timeout_seconds == 900, "the deletion to revert"
    )


async def test_an_invalid_kv_value_is_refused_and_the_old_value_stays(
    consul_double: ConsulDouble,
    watched_app: FastAPI,
    watched: AsyncClient,
    consul_settings: ProbeSettings,
    make_token: TokenMaker,
) -> None:
    live: LiveConfig = watched_app.state.live_config
    consul_double.kv_put(SERVICE + "payment_timeout_seconds", "60")
    await eventually(lambda: consul_settings.payment_timeout_seconds == 60, "60 to apply")

    consul_double.kv_put(SERVICE + "payment_timeout_seconds", "0")
    consul_double.kv_put(SERVICE + "log_level", "SHOUTING")

    await eventually(lambda: len(live.rejected()) == 2, "both values to be refused")
    assert consul_settings.payment_timeout_seconds == 60
    assert consul_settings.log_level == "INFO"
    response = await watched.get("/api/v1/admin/config", headers=bearer(make_token(1, "admin")))
    assert [(r["kv_key"], r["value"]) for r in response.json()["rejected"]] == [
        (SERVICE + "log_level", "SHOUTING"),
        (SERVICE + "payment_timeout_seconds", "0"),
    ]


async def test_while_consul_is_down_the_values_stay_and_the_watch_recovers(
    consul_double: ConsulDouble,
    watched_app: FastAPI,
    watched: AsyncClient,
    consul_settings: ProbeSettings,
) -> None:
    watcher = watched_app.state.live_config_watcher
    consul_double.kv_put(SERVICE + "payment_timeout_seconds", "60")
    await eventually(lambda: consul_settings.payment_timeout_seconds == 60, "60 to apply")

    consul_double.stop()
    await eventually(lambda: watcher.error is not None, "the watcher to notice")
    assert consul_settings.payment_timeout_seconds == 60
    consul_double.kv_put(SERVICE + "payment_timeout_seconds", "75")
    consul_double.start()

    await eventually(lambda: consul_settings.payment_timeout_seconds == 75, "75 after recovery")
    await eventually(lambda: watcher.error is None, "the error to clear")


async def test_the_watch_uses_blocking_queries_on_both_prefixes(
    consul_double: ConsulDouble, watched: AsyncClient, consul_settings: ProbeSettings
) -> None:
    consul_double.kv_put(SERVICE + "payment_timeout_seconds", "61")
    await eventually(lambda: consul_settings.payment_timeout_seconds == 61, "61 to apply")

    paths = [path for method, path in consul_double.requests() if method == "GET"]
    for prefix in (SERVICE, SHARED):
        reads = [p for p in paths if p.startswith(f"/v1/kv/{prefix}?")]
        assert "recurse=1" in reads[0]
        assert any("index=" in p and "wait=1s" in p for p in reads[1:]), reads


async def test_with_static_discovery_nothing_talks_to_consul(
    consul_double: ConsulDouble,
    consul_settings: ProbeSettings,
    test_signing_key: SigningKey,
) -> None:
    consul_double.kv_put(SERVICE + "payment_timeout_seconds", "60")
    consul_settings.discovery_backend = "static"
    app = build_probe_app(consul_settings, test_signing_key, hook=live_config_lifespan(LIVE_KEYS))

    async for _http in started(app):
        assert app.state.live_config_watcher is None
        assert consul_settings.payment_timeout_seconds == 900

    assert consul_double.requests() == []
