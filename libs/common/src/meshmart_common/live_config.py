"""Live configuration: selected settings overridden from Consul KV without a restart.

Each service names its *live keys*, settings fields that may change while it
runs (:data:`COMMON_LIVE_KEYS` plus its own, e.g. ``payment_timeout_seconds``).
Their value comes from the first of:

1. ``meshmart/config/<service>/<key>`` in Consul KV;
2. ``meshmart/config/shared/<key>``;
3. the environment (or .env, or the constructor) when it set the field, else
   the field's default.

Deleting a KV key falls back to the next source. A value is applied by
assigning it to the live settings object (``app.state.settings``), so code
that reads a setting when it needs it (rather than copying it at start-up)
sees the new value at once; ``log_level`` also re-levels the loggers.

KV values are text. The rule: a value that parses as JSON is that JSON value
(``30``, ``true``, ``{"new_checkout": true}``, ``"INFO"``); when it does not
parse, or its JSON value is refused, the raw text is tried (so ``DEBUG`` and
``60`` both work for a string or number). Either is validated exactly as the
settings class validates that field: its type, its Field constraints, its
field validators and the model validators (on a throw-away copy). A refused
value is logged, listed by ``GET /api/v1/admin/config`` under ``rejected``,
and changes nothing: the value in effect before stays in effect.

With ``DISCOVERY_BACKEND=static`` nothing talks to Consul: the live values are
the settings, their source "environment" or "default". With ``consul`` a
:class:`ConsulConfigWatcher` keeps two blocking queries open, one per prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, Field, JsonValue, SecretBytes, SecretStr, ValidationError
from pydantic_core import to_jsonable_python

from meshmart_common.auth import AdminUser
from meshmart_common.discovery.client import open_consul
from meshmart_common.errors import ServiceUnavailable
from meshmart_common.messaging.backoff import Backoff
from meshmart_common.settings import ServiceSettings

if TYPE_CHECKING:
    # Only a type: create_app may then import this module without a cycle.
    from meshmart_common.app import LifespanHook

logger = logging.getLogger("meshmart.live_config")

CONFIG_ROOT = "meshmart/config/"
SHARED_SCOPE = "shared"
COMMON_LIVE_KEYS: tuple[str, ...] = ("log_level", "feature_flags")
"""Live keys every service has; a service adds its own (see its main.py)."""

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# uvicorn levels these from LOG_LEVEL at start-up (meshmart_common.cli), so they follow it live.
_SERVER_LOGGERS = ("uvicorn.error", "uvicorn.asgi")
# A refused value is shown to admins and logged; a huge one is cut short.
_MAX_SHOWN_VALUE = 200

Source = str
"""``consul:<kv key>``, ``environment`` or ``default``."""
ChangeHook = Callable[[str, Any], None]
"""Called with (key, new value) after a live key changed value."""


class LiveValueRefused(ValueError):
    """A KV value for a live key failed validation; ``reason`` says why."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


@dataclass(frozen=True, slots=True)
class EffectiveSetting:
    """A live key's value in effect and where it came from."""

    key: str
    value: Any
    source: Source


@dataclass(frozen=True, slots=True)
class RejectedValue:
    """A KV value that was refused (the previous value stayed in effect)."""

    key: str
    kv_key: str
    value: str
    reason: str


def _normalise_log_level(value: Any) -> str:
    # ServiceSettings.log_level is a plain str (configure_logging falls back to
    # INFO for nonsense); a live value is held to the real level names instead.
    text = str(value).strip().upper()
    if text not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
    return text


# Checks on top of the settings class's own validation, for fields it leaves loose.
_EXTRA_CHECKS: dict[str, Callable[[Any], Any]] = {"log_level": _normalise_log_level}


def apply_log_level(level: str) -> None:
    """Re-level the root logger (and uvicorn's) to ``level``; unknown names mean INFO."""
    numeric = logging.getLevelName(str(level).upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    logging.getLogger().setLevel(numeric)
    for name in _SERVER_LOGGERS:
        logging.getLogger(name).setLevel(numeric)


def _as_text(raw: str | bytes | None) -> tuple[str, bool]:
    """A KV value as text, and whether it was readable (UTF-8)."""
    if raw is None:
        return "", True  # Consul's empty value
    if isinstance(raw, str):
        return raw, True
    try:
        return raw.decode("utf-8"), True
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace"), False


def _shown(text: str) -> str:
    return text if len(text) <= _MAX_SHOWN_VALUE else text[:_MAX_SHOWN_VALUE] + "..."


def _reason(exc: ValidationError) -> str:
    # Only the messages: pydantic's str() would repeat the input value and a docs URL.
    return "; ".join(str(error["msg"]) for error in exc.errors()) or "invalid value"


class LiveConfig:
    """The live keys of one service: their sources, validation and application.

    ``settings`` is the object the app reads (``app.state.settings``); its
    values at construction are the fallback when no KV key is set. Feed it
    the complete KV contents of a prefix with :meth:`replace` (the watcher
    does); read the result with :meth:`effective` and :meth:`rejected`.
    """

    def __init__(
        self,
        settings: ServiceSettings,
        keys: Iterable[str],
        *,
        on_change: ChangeHook | None = None,
    ) -> None:
        self.settings = settings
        self.keys: tuple[str, ...] = tuple(dict.fromkeys(keys))
        fields = type(settings).model_fields
        for key in self.keys:
            if key not in fields:
                raise ValueError(f"{key} is not a field of {type(settings).__name__}")
            if isinstance(getattr(settings, key), SecretStr | SecretBytes):
                raise ValueError(f"{key} is a secret and cannot be a live setting")
        self.service_prefix = f"{CONFIG_ROOT}{settings.service_name}/"
        self.shared_prefix = f"{CONFIG_ROOT}{SHARED_SCOPE}/"
        if self.service_prefix == self.shared_prefix:
            raise ValueError(f"a service cannot be named {SHARED_SCOPE!r}")
        self._on_change = on_change
        self._fallback: dict[str, EffectiveSetting] = {
            key: EffectiveSetting(
                key,
                getattr(settings, key),
                "environment" if key in settings.model_fields_set else "default",
            )
            for key in self.keys
        }
        self._current = dict(self._fallback)
        self._text: dict[str, str] = {}  # kv key -> the text last seen there
        self._accepted: dict[str, Any] = {}  # kv key -> its last valid value
        self._rejected: dict[str, RejectedValue] = {}  # kv key -> why its text was refused

    @property
    def prefixes(self) -> tuple[str, str]:
        """The KV prefixes to watch: this service's, then the shared one."""
        return (self.service_prefix, self.shared_prefix)

    def validate(self, key: str, text: str) -> Any:
        """The value ``text`` sets live key ``key`` to; LiveValueRefused when invalid.

        JSON first, then the raw text (see the module docstring). The reason
        given is the JSON attempt's when the text is a JSON object or array
        (clearly meant as one), otherwise the raw text's.
        """
        if key not in self.keys:
            raise LiveValueRefused(key, "not a live setting of this service")
        candidates: list[Any] = []
        with contextlib.suppress(ValueError):
            candidates.append(json.loads(text))
        structured = bool(candidates) and isinstance(candidates[0], dict | list)
        if not candidates or candidates[0] != text:
            candidates.append(text)
        reasons: list[str] = []
        validator = type(self.settings).__pydantic_validator__
        for candidate in candidates:
            # A copy: validate_assignment runs the model validators on the
            # instance it is given, and the live object must not change yet.
            probe = self.settings.model_copy()
            try:
                validator.validate_assignment(probe, key, candidate)
                value = getattr(probe, key)
                check = _EXTRA_CHECKS.get(key)
                return check(value) if check is not None else value
            except ValidationError as exc:
                reasons.append(_reason(exc))
            except ValueError as exc:
                reasons.append(str(exc))
        raise LiveValueRefused(key, reasons[0] if structured else reasons[-1])

    def replace(self, prefix: str, entries: Mapping[str, str | bytes | None]) -> list[str]:
        """Take the complete KV contents under ``prefix`` (full key -> value); apply them.

        Keys that are not live keys of this service are ignored; keys missing
        from ``entries`` are treated as deleted. Returns the live keys whose
        value changed.
        """
        if prefix not in self.prefixes:
            raise ValueError(f"{prefix!r} is not one of {self.prefixes}")
        wanted = {prefix + key: key for key in self.keys}
        for kv_key in [k for k in self._text if k.startswith(prefix) and k not in entries]:
            self._forget(kv_key)
        for kv_key, raw in entries.items():
            key = wanted.get(kv_key)
            if key is None:
                continue
            text, readable = _as_text(raw)
            if self._text.get(kv_key) == text:
                continue
            self._text[kv_key] = text
            try:
                if not readable:
                    raise LiveValueRefused(key, "not UTF-8 text")
                self._accepted[kv_key] = self.validate(key, text)
            except LiveValueRefused as exc:
                self._refuse(kv_key, key, text, exc.reason)
            else:
                self._rejected.pop(kv_key, None)
        return self._apply()

    def effective(self) -> list[EffectiveSetting]:
        """Every live key with its value in effect and its source."""
        return [self._current[key] for key in self.keys]

    def rejected(self) -> list[RejectedValue]:
        """The KV values refused and still in KV (the previous value stayed)."""
        return sorted(self._rejected.values(), key=lambda item: item.kv_key)

    def _forget(self, kv_key: str) -> None:
        self._text.pop(kv_key, None)
        self._accepted.pop(kv_key, None)
        self._rejected.pop(kv_key, None)

    def _refuse(self, kv_key: str, key: str, text: str, reason: str) -> None:
        self._text[kv_key] = text
        self._rejected[kv_key] = RejectedValue(key, kv_key, _shown(text), reason)
        logger.warning(
            "live setting %s refused from consul:%s (%s); keeping %r",
            key,
            kv_key,
            reason,
            self._current[key].value,
        )

    def _resolve(self, key: str) -> EffectiveSetting:
        for prefix in self.prefixes:
            kv_key = prefix + key
            if kv_key in self._accepted:
                return EffectiveSetting(key, self._accepted[kv_key], f"consul:{kv_key}")
        return self._fallback[key]

    def _apply(self) -> list[str]:
        changed: list[str] = []
        for key in self.keys:
            before = self._current[key]
            after = self._resolve(key)
            if after == before:
                continue
            self._current[key] = after
            if after.value == before.value:
                continue  # the same value from another source: nothing to apply
            logger.info("live setting %s = %r (from %s)", key, after.value, after.source)
            setattr(self.settings, key, after.value)
            if key == "log_level":
                apply_log_level(after.value)
            if self._on_change is not None:
                try:
                    self._on_change(key, after.value)
                except Exception:
                    # The value is applied; a failing hook must not stop the watch.
                    logger.exception("live setting %s: the change hook failed", key)
            changed.append(key)
        return changed


# --- Consul ------------------------------------------------------------------


def consul_location(address: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a CONSUL_HTTP_ADDR, with or without its scheme."""
    parsed = urllib.parse.urlsplit(address if "//" in address else f"//{address}")
    scheme = parsed.scheme or "http"
    if scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"CONSUL_HTTP_ADDR must be host:port or an http(s) URL: {address!r}")
    return scheme, parsed.hostname, parsed.port or (443 if scheme == "https" else 8500)


def _next_index(previous: int | None, answered: Any) -> int | None:
    """The index of the next blocking query, as Consul's docs ask clients to treat it."""
    try:
        index = int(answered)
    except (TypeError, ValueError):
        return None  # no usable index: read once without blocking
    if previous is not None and index < previous:
        return None  # went backwards (e.g. a restored snapshot): start over
    return max(index, 1)  # an index below 1 would make every query return at once


class ConsulConfigWatcher:
    """Keeps a :class:`LiveConfig` in step with Consul KV through blocking queries.

    One task per prefix (service and shared) asks
    ``GET /v1/kv/<prefix>?recurse&index=<X-Consul-Index>&wait=<n>s``; each
    answer is the prefix's complete contents (404: none, so every override is
    gone). On an error the current values stay and the query is retried after
    a capped, jittered backoff.
    """

    def __init__(
        self,
        live_config: LiveConfig,
        *,
        consul_http_addr: str,
        token: str = "",
        wait_seconds: int = 30,
        backoff: Backoff | None = None,
        min_interval_seconds: float = 0.1,
    ) -> None:
        self.live_config = live_config
        self.scheme, self.host, self.port = consul_location(consul_http_addr)
        self.token = token
        self.wait_seconds = wait_seconds
        self.backoff = backoff or Backoff(timedelta(seconds=1), timedelta(seconds=30))
        self.min_interval_seconds = min_interval_seconds
        self._client: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._errors: dict[str, str] = {}
        self._synced: set[str] = set()
        self._all_synced = asyncio.Event()

    @property
    def error(self) -> str | None:
        """Why the values may be out of date (the last failed query), or None."""
        return "; ".join(self._errors[p] for p in sorted(self._errors)) or None

    @property
    def synced(self) -> bool:
        """True once both prefixes have been read at least once."""
        return self._all_synced.is_set()

    async def start(self) -> None:
        """Open the Consul client and start watching both prefixes."""
        self._client = open_consul(self.scheme, self.host, self.port, self.token)
        self._tasks = [
            asyncio.create_task(self._watch(prefix), name=f"live-config {prefix}")
            for prefix in self.live_config.prefixes
        ]

    async def wait_synced(self, within: float) -> bool:
        """Wait up to ``within`` seconds for the first read of both prefixes."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_synced.wait(), within)
        return self.synced

    async def stop(self) -> None:
        """Stop watching and close the client."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _read(self, prefix: str, index: int | None) -> tuple[Any, Any]:
        # Consul may hold a blocking query up to wait * 17/16; the client waits a bit longer.
        deadline = self.wait_seconds * 17 / 16 + 5
        result: tuple[Any, Any] = await self._client.kv.get(
            prefix,
            index=index,
            recurse=True,
            wait=f"{self.wait_seconds}s",
            connections_timeout=math.ceil(deadline),
        )
        return result

    async def _watch(self, prefix: str) -> None:
        index: int | None = None
        failures = 0
        while True:
            started = time.monotonic()
            try:
                answered, items = await self._read(prefix, index)
                entries = {
                    str(item["Key"]): item.get("Value")
                    for item in items or ()
                    if isinstance(item, dict) and "Key" in item
                }
            except Exception as exc:
                failures += 1
                self._errors[prefix] = f"reading consul:{prefix} failed: {exc!r}"
                delay = self.backoff.delay(failures).total_seconds()
                # The first failure is worth a warning; repeats of it only add noise.
                logger.log(
                    logging.WARNING if failures == 1 else logging.DEBUG,
                    "live config: %s; keeping the current values, retry in %.1f s",
                    self._errors[prefix],
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            if failures:
                logger.info("live config: reading consul:%s works again", prefix)
            failures = 0
            self._errors.pop(prefix, None)
            self.live_config.replace(prefix, entries)
            self._synced.add(prefix)
            if len(self._synced) == len(self.live_config.prefixes):
                self._all_synced.set()
            following = _next_index(index, answered)
            if following == index:
                # Nothing changed (the wait ran out): fine, unless answers come back
                # at once every time, which must not turn into a busy loop.
                pause = self.min_interval_seconds - (time.monotonic() - started)
                if pause > 0:
                    await asyncio.sleep(pause)
            index = following


def live_config_lifespan(
    keys: Iterable[str],
    *,
    on_change: ChangeHook | None = None,
    initial_sync_seconds: float = 5.0,
    backoff: Backoff | None = None,
) -> LifespanHook:
    """A create_app lifespan hook: ``app.state.live_config``, watched in Consul when enabled.

    The LiveConfig is always created (over ``app.state.settings``). Only with
    ``DISCOVERY_BACKEND=consul`` a :class:`ConsulConfigWatcher` runs
    (``app.state.live_config_watcher``); start-up waits up to
    ``initial_sync_seconds`` for the first KV read so the service starts with
    its overrides, and carries on without them when Consul does not answer.
    """
    live_keys = tuple(keys)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings: ServiceSettings = app.state.settings
        live: LiveConfig | None = getattr(app.state, "live_config", None)
        if live is None or live.settings is not settings:
            live = LiveConfig(settings, live_keys, on_change=on_change)
            app.state.live_config = live
        app.state.live_config_watcher = None
        if settings.discovery_backend != "consul":
            yield
            return
        watcher = ConsulConfigWatcher(
            live,
            consul_http_addr=settings.consul_http_addr,
            token=settings.consul_token.get_secret_value(),
            wait_seconds=settings.consul_wait_seconds,
            backoff=backoff,
        )
        await watcher.start()
        app.state.live_config_watcher = watcher
        try:
            if not await watcher.wait_synced(initial_sync_seconds):
                logger.warning(
                    "live config: no answer from Consul within %.0f s; starting with "
                    "the settings and watching on (%s)",
                    initial_sync_seconds,
                    watcher.error or "no answer yet",
                )
            yield
        finally:
            await watcher.stop()

    return lifespan


# --- admin API ---------------------------------------------------------------


class LiveSettingRead(BaseModel):
    """A live setting's value in effect and its source."""

    key: str = Field(description="the settings field (its env var is the upper-case name)")
    value: JsonValue = Field(description="the value in effect")
    source: str = Field(
        description="consul:<KV key> (a live override), environment (set by the env, .env "
        "or at start) or default"
    )


class RejectedValueRead(BaseModel):
    """A value in Consul KV that was refused; the previous value stayed in effect."""

    key: str
    kv_key: str
    value: str = Field(description="the refused text (long values cut short)")
    reason: str


class LiveConfigRead(BaseModel):
    """The live settings of this service (never secrets: only live keys are listed)."""

    backend: Literal["static", "consul"] = Field(
        description="consul: watched in Consul KV; static: the settings only"
    )
    synced: bool = Field(description="the KV values have been read (always true for static)")
    watch_error: str | None = Field(
        description="why the KV values may be out of date (the last failed read)"
    )
    settings: list[LiveSettingRead]
    rejected: list[RejectedValueRead]


def admin_config_router(prefix: str = "/admin/config") -> APIRouter:
    """``GET /admin/config`` (mount under /api/v1): the live settings and their sources."""
    router = APIRouter(prefix=prefix, tags=["live config"])
    problems: dict[int | str, dict[str, str]] = {
        401: {"description": "No valid access token (problem+json)"},
        403: {"description": "The caller is not an admin (problem+json)"},
        503: {"description": "Live configuration is not running in this service (problem+json)"},
    }

    @router.get("", response_model=LiveConfigRead, responses=problems)
    async def read_live_config(_admin: AdminUser, request: Request) -> LiveConfigRead:
        """The live settings in effect, where each comes from, and refused KV values (admins)."""
        live: LiveConfig | None = getattr(request.app.state, "live_config", None)
        if live is None:
            raise ServiceUnavailable("Live configuration is not running in this service.")
        watcher: ConsulConfigWatcher | None = getattr(
            request.app.state, "live_config_watcher", None
        )
        return LiveConfigRead(
            backend="consul" if watcher is not None else "static",
            synced=watcher.synced if watcher is not None else True,
            watch_error=watcher.error if watcher is not None else None,
            settings=[
                LiveSettingRead(
                    key=item.key, value=to_jsonable_python(item.value), source=item.source
                )
                for item in live.effective()
            ],
            rejected=[
                RejectedValueRead(
                    key=item.key, kv_key=item.kv_key, value=item.value, reason=item.reason
                )
                for item in live.rejected()
            ],
        )

    return router
