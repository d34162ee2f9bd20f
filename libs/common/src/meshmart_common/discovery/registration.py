"""Self-registration with the local Consul agent.

At start-up a service registers one instance (``PUT /v1/agent/service/register``)
with an HTTP check on its own /readyz; at shutdown it deregisters it. The body
is built here, field by field, in the PascalCase form of Consul's agent API
documentation (``ID``, ``Name``, ``Address``, ``Port``, ``Tags``, ``Meta``,
``Check`` with ``HTTP``, ``Method``, ``Interval``, ``Timeout`` and
``DeregisterCriticalServiceAfter``):

- ``ID`` is ``<service>-<address>-<port>``: unique per agent, and the same after
  a restart, so a restarted instance replaces its old entry instead of leaving
  a ghost behind (``replace-existing-checks`` keeps its check set in step).
- ``Address`` is a host or an IP, never a URL (:func:`advertised_address`).
- ``Tags`` are ``v<version>`` and the environment (``["v0.1.0", "production"]``),
  for ``?tag=`` filters and DNS (``production.product.service.consul``); the
  exact values are in ``Meta`` (``version``, ``environment``), for ``?filter=``.
- Durations are Go duration strings (``"10s"``, ``"500ms"``, ``"1m"``).

py-consul's own ``agent.service.register`` is not used: it sends lower-case
keys, wraps the check in a ``checks`` list and builds the check with
lower-case ``http``/``interval``/``timeout`` next to a PascalCase
``DeregisterCriticalServiceAfter`` and without ``Method``. Consul tolerates
that, but the body would not be the documented one; this module sends the
documented object through the same py-consul HTTP client instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import socket
from datetime import timedelta
from typing import Any

from consul.callback import CB  # type: ignore[import-untyped]
from consul.exceptions import ConsulException  # type: ignore[import-untyped]

from meshmart_common.discovery.client import consul_client
from meshmart_common.messaging.backoff import Backoff
from meshmart_common.settings import ServiceSettings

logger = logging.getLogger("meshmart.discovery")

READINESS_PATH = "/readyz"
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]", "*"})  # noqa: S104 - matched, not bound

_REGISTER_BACKOFF = Backoff(timedelta(seconds=1), timedelta(seconds=15))
_CALL_TIMEOUT_SECONDS = 5.0
_DEREGISTER_TIMEOUT_SECONDS = 2.0


def go_duration(seconds: float) -> str:
    """``seconds`` as a Go duration string, the form Consul reads ("10s", "1m30s", "500ms").

    Rounded to the millisecond; anything above zero is at least "1ms".
    """
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    millis = round(seconds * 1000)
    if millis == 0:
        return "1ms" if seconds > 0 else "0s"
    if millis < 1000:
        return f"{millis}ms"
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, fraction = divmod(rest, 1000)
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if fraction:
        parts.append(f"{whole}.{fraction:03d}".rstrip("0") + "s")
    elif whole:
        parts.append(f"{whole}s")
    return "".join(parts)


def _unbracket(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _this_machine_address() -> str:
    """The first non-loopback IP this machine's hostname resolves to, else the hostname."""
    hostname = socket.gethostname()
    try:
        infos = socket.getaddrinfo(hostname, None, type=socket.SOCK_STREAM)
    except OSError:
        return hostname
    # IPv4 first: it is what compose networks and most VMs hand out.
    infos.sort(key=lambda info: 0 if info[0] == socket.AF_INET else 1)
    for info in infos:
        ip = str(info[4][0]).split("%", 1)[0]
        with contextlib.suppress(ValueError):
            if not ipaddress.ip_address(ip).is_loopback:
                return ip
    # Debian maps the hostname to 127.0.1.1: others cannot reach that, but they
    # may resolve the name itself through their own DNS.
    return hostname


def advertised_address(settings: ServiceSettings) -> str:
    """The host or IP other services (and Consul's check) reach this instance at.

    ``ADVERTISE_ADDRESS`` when set; otherwise ``HOST``, unless ``HOST`` is a
    wildcard (``0.0.0.0``, ``::``, empty) that nobody can connect to: then the
    first non-loopback IP that this machine's hostname resolves to (a
    container's own IP in compose), or the hostname itself when it resolves to
    nothing better. It may look up the hostname, so call it off the event loop
    when that matters. Raises ValueError for a URL.
    """
    explicit = settings.advertise_address.strip()
    if explicit:
        if "/" in explicit or "://" in explicit:
            raise ValueError(f"ADVERTISE_ADDRESS must be a host or an IP, not a URL: {explicit!r}")
        return _unbracket(explicit)
    host = settings.host.strip()
    if host in WILDCARD_HOSTS:
        return _this_machine_address()
    return _unbracket(host)


def service_id(settings: ServiceSettings, address: str) -> str:
    """The instance id: ``<service>-<address>-<port>``."""
    return f"{settings.service_name}-{address}-{settings.port}"


def registration_payload(settings: ServiceSettings, address: str | None = None) -> dict[str, Any]:
    """The JSON object to PUT to ``/v1/agent/service/register`` for this instance.

    ``address`` defaults to :func:`advertised_address`; given, the function is pure.
    """
    address = advertised_address(settings) if address is None else _unbracket(address)
    instance = service_id(settings, address)
    version = settings.service_version
    environment = str(settings.environment)
    return {
        "ID": instance,
        "Name": settings.service_name,
        "Address": address,
        "Port": settings.port,
        "Tags": [f"v{version.removeprefix('v')}", environment],
        "Meta": {"version": version, "environment": environment},
        "Check": {
            "CheckID": f"service:{instance}",
            "Name": f"{settings.service_name} readiness",
            "HTTP": f"http://{_bracket(address)}:{settings.port}{READINESS_PATH}",
            "Method": "GET",
            "Interval": go_duration(settings.consul_check_interval_seconds),
            "Timeout": go_duration(settings.consul_check_timeout_seconds),
            "DeregisterCriticalServiceAfter": go_duration(
                max(settings.consul_deregister_after_seconds, 60)
            ),
        },
    }


class ConsulRegistration:
    """This instance's entry in the local Consul agent.

    :meth:`start` registers in the background, retrying with backoff while the
    agent is away, so the service starts and serves either way (the failures
    are logged, and :meth:`degraded` says so for /readyz). :meth:`stop`
    deregisters, best effort. ``client`` is a ``consul.aio.Consul`` to share;
    without one the registration makes its own in :meth:`start` and closes it
    in :meth:`stop`.
    """

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        client: Any = None,
        address: str | None = None,
        backoff: Backoff = _REGISTER_BACKOFF,
    ) -> None:
        self.settings = settings
        self._client = client
        self._owns_client = client is None
        self._address = address
        self._backoff = backoff
        self._task: asyncio.Task[None] | None = None
        self._attempted = False
        self.registered = False
        self.last_error: str | None = None

    @property
    def address(self) -> str:
        """The advertised address (looked up on first use)."""
        if self._address is None:
            self._address = advertised_address(self.settings)
        return self._address

    @property
    def service_id(self) -> str:
        """The id this instance registers under."""
        return service_id(self.settings, self.address)

    def payload(self) -> dict[str, Any]:
        """The register body (see :func:`registration_payload`)."""
        return registration_payload(self.settings, self.address)

    def _consul(self) -> Any:
        if self._client is None:
            self._client = consul_client(self.settings)
        return self._client

    async def register(self) -> None:
        """Register once; raises when the agent is unreachable or refuses."""
        client = self._consul()
        body = json.dumps(self.payload())
        self._attempted = True
        async with asyncio.timeout(_CALL_TIMEOUT_SECONDS):
            # The documented body, through py-consul's HTTP layer (module docstring).
            accepted = await client.http.put(
                CB.boolean(),
                "/v1/agent/service/register",
                params=[("replace-existing-checks", "true")],
                headers=client.prepare_headers(),
                data=body,
            )
        if not accepted:  # py-consul raises for other 4xx and 5xx, answers False for 404
            raise ConsulException("the agent has no /v1/agent/service/register (404)")
        self.registered = True
        self.last_error = None

    async def start(self) -> None:
        """Register in the background until it works (returns at once)."""
        if self._task is None:
            if self._address is None:
                # A hostname lookup may block: keep it off the event loop.
                self._address = await asyncio.to_thread(advertised_address, self.settings)
            self._consul()
            self._task = asyncio.create_task(
                self._register_until_done(), name=f"consul-register-{self.settings.service_name}"
            )

    async def wait_registered(self) -> None:
        """Wait until the background registration has succeeded."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _register_until_done(self) -> None:
        attempt = 0
        while True:
            try:
                await self.register()
            except Exception as exc:
                attempt += 1
                self.last_error = type(exc).__name__
                delay = self._backoff.delay(attempt).total_seconds()
                logger.warning(
                    "cannot register %s with consul at %s (retrying in %.1f s): %r",
                    self.service_id,
                    self.settings.consul_http_addr,
                    delay,
                    exc,
                )
                await asyncio.sleep(delay)
                continue
            logger.info(
                "registered %s with consul (%s:%s, check %s)",
                self.service_id,
                self.address,
                self.settings.port,
                self.payload()["Check"]["HTTP"],
            )
            return

    def degraded(self) -> str | None:
        """Why this instance is not registered (yet), or None once it is."""
        if self.registered or self._task is None:
            return None
        cause = f" ({self.last_error})" if self.last_error else ""
        return f"not registered with consul yet{cause}; retrying"

    async def deregister(
        self,
        timeout: float = _DEREGISTER_TIMEOUT_SECONDS,  # noqa: ASYNC109 - bounds shutdown
    ) -> bool:
        """Remove this instance from the agent; best effort, never raises.

        Returns True when the agent removed it, False when it could not be
        reached or did not know it.
        """
        if not self._attempted:
            return False
        try:
            async with asyncio.timeout(timeout):
                known = await self._consul().agent.service.deregister(self.service_id)
        except Exception as exc:
            # Consul's DeregisterCriticalServiceAfter removes it later anyway.
            logger.warning("cannot deregister %s from consul: %r", self.service_id, exc)
            return False
        self.registered = False
        if not known:  # 404: already gone (reaped, or the agent lost its state)
            logger.info("%s was not registered with consul any more", self.service_id)
            return False
        logger.info("deregistered %s from consul", self.service_id)
        return True

    async def stop(self) -> None:
        """Stop retrying, deregister (best effort) and close an own client."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.deregister()
        self._attempted = False  # a later deregister() has nothing left to do
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            with contextlib.suppress(Exception):
                await client.close()
