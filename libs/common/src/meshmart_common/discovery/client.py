"""The asyncio Consul client (py-consul's ``consul.aio``), configured from settings only."""

from __future__ import annotations

import warnings
from typing import Any
from urllib.parse import urlsplit

from meshmart_common.settings import ServiceSettings

CONSUL_HTTP_PORT = 8500
CONSUL_HTTPS_PORT = 8501


def consul_endpoint(http_addr: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of ``CONSUL_HTTP_ADDR``.

    Accepts ``http://host:port``, ``https://host:port`` and ``host:port`` (http),
    like the Consul CLI; without a port, Consul's own 8500 (http) or 8501 (https).
    """
    text = http_addr.strip()
    parsed = urlsplit(text if "://" in text else f"http://{text}")
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"CONSUL_HTTP_ADDR must be host:port or an http(s) URL: {http_addr!r}")
    try:
        port = parsed.port
    except ValueError as exc:
        raise ValueError(f"CONSUL_HTTP_ADDR has an invalid port: {http_addr!r}") from exc
    if port is None:
        port = CONSUL_HTTPS_PORT if parsed.scheme == "https" else CONSUL_HTTP_PORT
    return parsed.scheme, parsed.hostname, port


def consul_client(settings: ServiceSettings) -> Any:
    """A ``consul.aio.Consul`` for ``CONSUL_HTTP_ADDR`` and the token of the settings.

    Must be called inside a running event loop (it opens an aiohttp session);
    close it with ``await client.close()``. Host, port, scheme and TLS
    verification are passed explicitly, so py-consul's own reading of
    ``CONSUL_HTTP_ADDR``/``CONSUL_HTTP_SSL*`` does not apply. The token
    setting wins when set; when it is empty, py-consul's fallback to the
    ``CONSUL_HTTP_TOKEN`` environment variable is kept.
    """
    scheme, host, port = consul_endpoint(settings.consul_http_addr)
    return open_consul(scheme, host, port, settings.consul_token.get_secret_value())


def open_consul(scheme: str, host: str, port: int, token: str = "") -> Any:
    """A ``consul.aio.Consul`` at ``scheme://host:port`` (inside a running event loop).

    An empty ``token`` keeps py-consul's fallback to ``CONSUL_HTTP_TOKEN``.
    py-consul (and aiohttp under it) is imported here, on first use: a service
    on the static backend never loads it.
    """
    import consul.aio  # type: ignore[import-untyped, unused-ignore]

    with warnings.catch_warnings():
        # py-consul 1.8 passes aiohttp's deprecated verify_ssl/ssl_context arguments.
        warnings.simplefilter("ignore", DeprecationWarning)
        client = consul.aio.Consul(host=host, port=port, scheme=scheme, verify=scheme == "https")
    if token:
        client.token = token
    return client
