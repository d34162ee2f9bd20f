"""The register body is Consul's documented agent API object, built from the settings."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from meshmart_common.discovery import registration as registration_module
from meshmart_common.discovery.client import consul_client, consul_endpoint
from meshmart_common.discovery.registration import (
    advertised_address,
    go_duration,
    registration_payload,
)
from meshmart_common.settings import Environment, ServiceSettings

# The fields of PUT /v1/agent/service/register and of its Check, as Consul's
# API documentation spells them (website/content/api-docs/agent/service.mdx
# and agent/check.mdx).
DOCUMENTED_SERVICE_FIELDS = {
    "Name",
    "ID",
    "Tags",
    "Address",
    "TaggedAddresses",
    "Meta",
    "Namespace",
    "Port",
    "Kind",
    "Proxy",
    "Connect",
    "Check",
    "Checks",
    "EnableTagOverride",
    "Weights",
}
DOCUMENTED_CHECK_FIELDS = {
    "CheckID",
    "Name",
    "Interval",
    "Notes",
    "DeregisterCriticalServiceAfter",
    "HTTP",
    "Method",
    "Body",
    "Header",
    "Timeout",
    "TLSServerName",
    "TLSSkipVerify",
    "Status",
    "SuccessBeforePassing",
    "FailuresBeforeCritical",
}


ANY_INTERFACE = "0.0.0.0"  # noqa: S104 - a HOST value under test, nothing binds it


def make_settings(**overrides: Any) -> ServiceSettings:
    values: dict[str, Any] = {
        "service_name": "product",
        "service_version": "0.3.1",
        "environment": Environment.PRODUCTION,
        "host": "10.1.2.3",
        "port": 8002,
        "database_url": "sqlite+aiosqlite:///:memory:",
        "advertise_address": "",
        "consul_check_interval_seconds": 10,
        "consul_check_timeout_seconds": 2,
        "consul_deregister_after_seconds": 60,
        "consul_http_addr": "http://127.0.0.1:8500",
        "consul_token": "",
    }
    values.update(overrides)
    return ServiceSettings(**values)


def test_the_payload_is_the_documented_register_object() -> None:
    payload = registration_payload(make_settings())

    assert payload == {
        "ID": "product-10.1.2.3-8002",
        "Name": "product",
        "Address": "10.1.2.3",
        "Port": 8002,
        "Tags": ["v0.3.1", "production"],
        "Meta": {"version": "0.3.1", "environment": "production"},
        "Check": {
            "CheckID": "service:product-10.1.2.3-8002",
            "Name": "product readiness",
            "HTTP": "http://10.1.2.3:8002/readyz",
            "Method": "GET",
            "Interval": "10s",
            "Timeout": "2s",
            "DeregisterCriticalServiceAfter": "1m",
        },
    }
    assert set(payload) <= DOCUMENTED_SERVICE_FIELDS
    assert set(payload["Check"]) <= DOCUMENTED_CHECK_FIELDS
    # One JSON object, exactly as sent.
    assert json.loads(json.dumps(payload)) == payload


def test_the_payload_field_types_match_the_api() -> None:
    payload = registration_payload(make_settings())
    assert isinstance(payload["Port"], int)
    assert all(isinstance(tag, str) for tag in payload["Tags"])
    # Meta is map<string|string>; keys are letters, digits, "_" and "-".
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in payload["Meta"].items())
    assert all(k.replace("_", "").replace("-", "").isalnum() for k in payload["Meta"])
    assert "://" not in payload["Address"]


def test_the_check_durations_come_from_the_settings() -> None:
    payload = registration_payload(
        make_settings(
            consul_check_interval_seconds=2.5,
            consul_check_timeout_seconds=0.5,
            consul_deregister_after_seconds=5400,
        )
    )
    check = payload["Check"]
    assert (check["Interval"], check["Timeout"], check["DeregisterCriticalServiceAfter"]) == (
        "2.5s",
        "500ms",
        "1h30m",
    )


def test_the_version_tag_is_not_prefixed_twice() -> None:
    payload = registration_payload(make_settings(service_version="v2.0.0"))
    assert payload["Tags"] == ["v2.0.0", "production"]
    assert payload["Meta"]["version"] == "v2.0.0"


def test_an_ipv6_address_is_bracketed_in_the_check_url_only() -> None:
    payload = registration_payload(make_settings(advertise_address="[fd00::5]"))
    assert payload["Address"] == "fd00::5"
    assert payload["ID"] == "product-fd00::5-8002"
    assert payload["Check"]["HTTP"] == "http://[fd00::5]:8002/readyz"


def test_an_explicit_address_makes_the_payload_independent_of_the_host() -> None:
    payload = registration_payload(make_settings(host=ANY_INTERFACE), address="product-1")
    assert payload["Address"] == "product-1"
    assert payload["Check"]["HTTP"] == "http://product-1:8002/readyz"


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (10, "10s"),
        (10.0, "10s"),
        (2.5, "2.5s"),
        (0.5, "500ms"),
        (0.25, "250ms"),
        (0.0004, "1ms"),
        (0, "0s"),
        (60, "1m"),
        (90, "1m30s"),
        (61.5, "1m1.5s"),
        (3600, "1h"),
        (86_400, "24h"),
        (3661, "1h1m1s"),
    ],
)
def test_go_durations(seconds: float, expected: str) -> None:
    assert go_duration(seconds) == expected


def test_a_negative_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        go_duration(-1)


def test_the_advertise_address_wins() -> None:
    settings = make_settings(host=ANY_INTERFACE, advertise_address="product.internal")
    assert advertised_address(settings) == "product.internal"


def test_a_concrete_host_is_advertised_as_is() -> None:
    assert advertised_address(make_settings(host="127.0.0.1")) == "127.0.0.1"
    assert advertised_address(make_settings(host="vm-7.example")) == "vm-7.example"


@pytest.mark.parametrize("wildcard", [ANY_INTERFACE, "::", "[::]", ""])
def test_a_wildcard_host_advertises_this_machine(
    wildcard: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "box-1")

    def getaddrinfo(host: str, *_args: Any, **_kwargs: Any) -> list[Any]:
        assert host == "box-1"
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fd00::9", 0, 0, 0)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.1.1", 0)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("172.18.0.5", 0)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    # IPv4 first, loopback skipped.
    assert advertised_address(make_settings(host=wildcard)) == "172.18.0.5"


def test_a_hostname_that_only_resolves_to_loopback_is_advertised_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "laptop")
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda *_a, **_k: [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.1.1", 0))],
    )
    assert advertised_address(make_settings(host=ANY_INTERFACE)) == "laptop"


def test_an_unresolvable_hostname_is_advertised_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "lonely")

    def fail(*_args: Any, **_kwargs: Any) -> Any:
        raise socket.gaierror("no such host")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    assert advertised_address(make_settings(host=ANY_INTERFACE)) == "lonely"


def test_the_real_machine_address_is_never_a_wildcard() -> None:
    address = registration_module._this_machine_address()
    assert address
    assert address not in registration_module.WILDCARD_HOSTS


@pytest.mark.parametrize("url", ["http://10.0.0.1:8002", "10.0.0.1/api", "https://x"])
def test_a_url_as_advertise_address_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="not a URL"):
        advertised_address(make_settings(advertise_address=url))


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("http://127.0.0.1:8500", ("http", "127.0.0.1", 8500)),
        ("https://consul.example:8443", ("https", "consul.example", 8443)),
        ("consul:8500", ("http", "consul", 8500)),
        ("consul", ("http", "consul", 8500)),
        ("https://consul", ("https", "consul", 8501)),
    ],
)
def test_the_consul_address_forms(addr: str, expected: tuple[str, str, int]) -> None:
    assert consul_endpoint(addr) == expected


@pytest.mark.parametrize("addr", ["ftp://consul:21", "http://", "consul:notaport"])
def test_a_bad_consul_address_is_refused(addr: str) -> None:
    with pytest.raises(ValueError, match="CONSUL_HTTP_ADDR"):
        consul_endpoint(addr)


async def test_the_token_setting_is_sent_and_wins_over_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "from-env")
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "http://elsewhere:1")
    client = consul_client(
        make_settings(consul_http_addr="http://127.0.0.1:8511", consul_token="s3cret")
    )
    try:
        assert client.http.base_uri == "http://127.0.0.1:8511"
        assert client.prepare_headers() == {"X-Consul-Token": "s3cret"}
    finally:
        await client.close()


async def test_without_a_token_no_token_header_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONSUL_HTTP_TOKEN", raising=False)
    client = consul_client(make_settings())
    try:
        assert client.prepare_headers() == {}
    finally:
        await client.close()
