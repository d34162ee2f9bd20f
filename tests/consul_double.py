"""A stateful TEST DOUBLE of the Consul agent HTTP API, for tests only.

No Consul binary can be installed where the tests run, so the tests of service
discovery and live configuration talk to :class:`ConsulDouble` instead: an
aiohttp server on 127.0.0.1, in a background thread, that answers the part of
Consul's v1 HTTP API MeshMart uses the way Consul documents it
(https://developer.hashicorp.com/consul/api-docs) and, where the documentation
is silent, the way Consul's agent code behaves. Compose and production run the
real Consul; nothing outside ``tests/`` imports this module.

Endpoints (anything else answers 404, a known path with the wrong method 405):

- ``PUT /v1/agent/service/register`` (``?replace-existing-checks``): one JSON
  object; keys match case-insensitively and in snake_case, as Go's
  ``encoding/json`` and Consul's aliases do; ``ID`` defaults to ``Name``; one
  ``Check`` and/or a ``Checks`` list of HTTP, TCP or TTL checks whose durations
  are Go duration strings. Errors are 400 with Consul's plain-text message.
- ``PUT /v1/agent/service/deregister/<id>`` (404 "Unknown service ID" when unknown).
- ``GET /v1/agent/services``, ``GET /v1/agent/checks``.
- ``PUT /v1/agent/check/{pass,warn,fail}/<check id>`` and
  ``PUT /v1/agent/check/update/<check id>`` for TTL checks.
- ``GET /v1/health/service/<name>`` (``passing``, ``tag``, blocking).
- ``GET /v1/catalog/services`` (blocking).
- ``GET|PUT|DELETE /v1/kv/<key>`` (``recurse``, ``keys``, ``separator``,
  ``raw``, ``flags``, ``cas``; GET is blocking).

Behaviour that is real, not canned:

- Each HTTP/TCP check runs on the double's event loop every ``Interval``
  (at least 1 s, as Consul enforces), first after a random stagger within one
  interval, with its ``Timeout`` (10 s by default): 2xx is passing, 429
  warning, anything else, a refused connection or a timeout critical, and
  ``Output`` says why in Consul's words. A new check starts critical unless the
  registration gives ``Status``; re-registering keeps a check's last status.
  ``SuccessBeforePassing`` / ``FailuresBeforeWarning`` / ``FailuresBeforeCritical``
  count as in Consul. TTL checks turn critical when their TTL runs out.
- Every status change raises the index (``X-Consul-Index``, never 0) and wakes
  blocking queries; ``index``/``wait`` block for real (wait: 5 min by default,
  10 min at most, plus up to wait/16 of jitter, as documented).
- A service whose check stays critical longer than its
  ``DeregisterCriticalServiceAfter`` is deregistered. As in Consul a value
  under one minute counts as one minute; the requested value is kept for
  :meth:`ConsulDouble.deregister_critical_after`. Consul's reaper runs every
  30 s; the double reaps at once, after each check result and in
  :meth:`ConsulDouble.advance`, which moves the double's clock for this timer
  only, so tests need not wait a minute.

Differences from Consul, each deliberate:

- Every read, agent reads included, carries ``X-Consul-Index``,
  ``X-Consul-KnownLeader: true`` and ``X-Consul-LastContact: 0`` (Consul sends
  no index on ``/v1/agent/services`` and ``/v1/agent/checks``).
- ``?filter=`` answers 400 (not implemented, rather than silently unfiltered);
  ``?dc=`` other than ``dc1`` answers 500 "No path to datacenter" as Consul does.
- Script, Docker, gRPC, H2PING, UDP, alias and OS-service checks, and service
  kinds other than a typical service, are refused with 400; KV ``acquire`` and
  ``release`` (sessions) likewise.
- A changed check output without a status change reaches the agent views at
  once and the health view with the next status change (Consul syncs it later
  on its ``check_update_interval`` timer, 5 min by default; the double has no
  such timer).
- ACL tokens are accepted and never checked; KV keys are not screened for the
  characters and file extensions that recent Consul versions refuse.
- One node (``consul-double``, 127.0.0.1, dc1) that also carries the ``consul``
  service, as a single dev agent does.

The module is a pytest plugin too (``-p tests.consul_double`` in the root
pyproject): the ``consul_double`` fixture yields a started double.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import ipaddress
import itertools
import json
import os
import random
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

T = TypeVar("T")

HOST: Final = "127.0.0.1"
DATACENTER: Final = "dc1"
NODE_NAME: Final = "consul-double"
NODE_ADDRESS: Final = "127.0.0.1"

PASSING: Final = "passing"
WARNING: Final = "warning"
CRITICAL: Final = "critical"
_SEVERITY: Final = {PASSING: 0, WARNING: 1, CRITICAL: 2}

SECOND_NS: Final = 1_000_000_000
DEFAULT_QUERY_WAIT_NS: Final = 5 * 60 * SECOND_NS
MAX_QUERY_WAIT_NS: Final = 10 * 60 * SECOND_NS
MIN_CHECK_INTERVAL_NS: Final = SECOND_NS
MIN_DEREGISTER_AFTER_NS: Final = 60 * SECOND_NS
DEFAULT_CHECK_TIMEOUT_NS: Final = 10 * SECOND_NS
DEFAULT_OUTPUT_MAX_SIZE: Final = 4096
KV_MAX_VALUE_SIZE: Final = 512 * 1024
_SHUTDOWN_GRACE_SECONDS: Final = 0.1
_CALL_TIMEOUT_SECONDS: Final = 30.0


# --- Go's parsing rules ---------------------------------------------------------


class GoSyntaxError(ValueError):
    """A value Go's standard library refuses; the message is the one Go gives."""


def _go_quote(text: str) -> str:
    """``text`` quoted like Go's ``%q`` (close enough for messages)."""
    return json.dumps(text, ensure_ascii=False)


_DURATION_UNITS: Final[dict[str, int]] = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # Go accepts both micro signs
    "μs": 1_000,
    "ms": 1_000_000,
    "s": SECOND_NS,
    "m": 60 * SECOND_NS,
    "h": 3600 * SECOND_NS,
}
_DURATION_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")


def parse_go_duration(text: str) -> int:
    """Nanoseconds of a Go duration ("10s", "1m30s", "500ms", "2h"), as ``time.ParseDuration``."""
    rest = text
    negative = rest.startswith("-")
    if rest[:1] in ("-", "+"):
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise GoSyntaxError(f"time: invalid duration {_go_quote(text)}")
    total = 0
    while rest:
        part = _DURATION_PART.match(rest)
        assert part is not None  # every group is optional
        whole, fraction, unit = part.group(1), part.group(2) or "", part.group(3)
        if not whole and not fraction:
            raise GoSyntaxError(f"time: invalid duration {_go_quote(text)}")
        if not unit:
            raise GoSyntaxError(f"time: missing unit in duration {_go_quote(text)}")
        scale = _DURATION_UNITS.get(unit)
        if scale is None:
            raise GoSyntaxError(
                f"time: unknown unit {_go_quote(unit)} in duration {_go_quote(text)}"
            )
        total += int(whole or "0") * scale
        if fraction:
            total += int(fraction) * scale // 10 ** len(fraction)
        rest = rest[part.end() :]
    return -total if negative else total


def _decimal(value: int, unit: int) -> str:
    whole, fraction = divmod(value, unit)
    if not fraction:
        return str(whole)
    digits = str(fraction).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


def format_go_duration(nanoseconds: int) -> str:
    """``nanoseconds`` as Go's ``Duration.String()`` writes it ("10s", "1m30s", "1h0m0s")."""
    if nanoseconds == 0:
        return "0s"
    sign = "-" if nanoseconds < 0 else ""
    size = abs(nanoseconds)
    if size < 1_000:
        return f"{sign}{size}ns"
    if size < 1_000_000:
        return f"{sign}{_decimal(size, 1_000)}µs"
    if size < SECOND_NS:
        return f"{sign}{_decimal(size, 1_000_000)}ms"
    hours, size = divmod(size, 3600 * SECOND_NS)
    minutes, size = divmod(size, 60 * SECOND_NS)
    seconds = _decimal(size, SECOND_NS) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return sign + seconds


def parse_go_bool(text: str) -> bool:
    """``text`` read by Go's ``strconv.ParseBool``."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise GoSyntaxError(f"strconv.ParseBool: parsing {_go_quote(text)}: invalid syntax")


def parse_go_uint(text: str) -> int:
    """``text`` read by Go's ``strconv.ParseUint(text, 10, 64)``."""
    if not text or not text.isascii() or not text.isdigit():
        raise GoSyntaxError(f"strconv.ParseUint: parsing {_go_quote(text)}: invalid syntax")
    value = int(text)
    if value >= 2**64:
        raise GoSyntaxError(f"strconv.ParseUint: parsing {_go_quote(text)}: value out of range")
    return value


# --- decoding a registration ------------------------------------------------------


class RegistrationError(ValueError):
    """A registration the agent refuses with 400; the message is the agent's."""


@dataclass(frozen=True)
class CheckSpec:
    """One check of a registration, as the agent reads a ``CheckType``."""

    check_id: str = ""
    name: str = ""
    notes: str = ""
    status: str = ""
    http: str = ""
    method: str = ""
    header: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    body: str = ""
    tcp: str = ""
    tls_skip_verify: bool = False
    disable_redirects: bool = False
    interval_ns: int = 0
    timeout_ns: int = 0
    ttl_ns: int = 0
    deregister_after_ns: int = 0
    output_max_size: int = 0
    success_before_passing: int = 0
    failures_before_warning: int = 0
    failures_before_critical: int = 0
    unsupported: str = ""

    @property
    def kind(self) -> str:
        """``http``, ``tcp`` or ``ttl`` (the check types the double runs)."""
        if self.http:
            return "http"
        if self.tcp:
            return "tcp"
        return "ttl"

    @property
    def interval_seconds(self) -> float:
        """The run interval, raised to Consul's 1 s minimum."""
        return max(self.interval_ns, MIN_CHECK_INTERVAL_NS) / SECOND_NS

    @property
    def timeout_seconds(self) -> float:
        """The probe timeout (10 s unless the registration says otherwise)."""
        return (self.timeout_ns if self.timeout_ns > 0 else DEFAULT_CHECK_TIMEOUT_NS) / SECOND_NS

    @property
    def max_output(self) -> int:
        """How many bytes of output are kept (4096, or less when asked)."""
        if 0 < self.output_max_size < DEFAULT_OUTPUT_MAX_SIZE:
            return self.output_max_size
        return DEFAULT_OUTPUT_MAX_SIZE


@dataclass(frozen=True)
class ServiceSpec:
    """A decoded ``/v1/agent/service/register`` body."""

    service_id: str
    name: str
    tags: tuple[str, ...] = ()
    address: str = ""
    port: int = 0
    meta: Mapping[str, str] | None = None
    tagged_addresses: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    weights: tuple[int, int] = (1, 1)
    enable_tag_override: bool = False
    checks: tuple[CheckSpec, ...] = ()


def _fold(key: str) -> str:
    """A JSON key as Go matches it to a field: case-insensitive, snake_case alias included."""
    return key.replace("_", "").lower()


def _json_kind(value: Any) -> str:
    """The JSON type of ``value`` as Go's decoder names it in errors."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return f"number {json.dumps(value)}"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _decode_failed(message: str) -> RegistrationError:
    return RegistrationError(f"Request decode failed: {message}")


class _GoStruct:
    """A JSON object read the way Go's ``encoding/json`` fills a struct."""

    def __init__(self, raw: Mapping[str, Any], struct: str) -> None:
        self.struct = struct
        self._values = {_fold(key): value for key, value in raw.items()}

    def _raw(self, name: str) -> Any:
        return self._values.get(_fold(name))

    def _mismatch(self, name: str, value: Any, go_type: str) -> RegistrationError:
        return _decode_failed(
            f"json: cannot unmarshal {_json_kind(value)} into Go struct field "
            f"{self.struct}.{name} of type {go_type}"
        )

    def has(self, name: str) -> bool:
        """Whether the object has a non-null ``name``."""
        return self._raw(name) is not None

    def string(self, name: str) -> str:
        """A string field ("" when absent or null)."""
        value = self._raw(name)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self._mismatch(name, value, "string")
        return value

    def integer(self, name: str) -> int:
        """An int field (0 when absent); a fraction or a quoted number is refused."""
        value = self._raw(name)
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._mismatch(name, value, "int")
        return value

    def boolean(self, name: str) -> bool:
        """A bool field (false when absent)."""
        value = self._raw(name)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self._mismatch(name, value, "bool")
        return value

    def duration(self, name: str) -> int:
        """A duration: a Go duration string, or a number of nanoseconds (Consul takes both)."""
        value = self._raw(name)
        if isinstance(value, str):
            try:
                return parse_go_duration(value)
            except GoSyntaxError as error:
                raise _decode_failed(str(error)) from error
        if isinstance(value, int | float) and not isinstance(value, bool):
            return int(value)
        return 0  # Consul's decoder ignores other JSON types here

    def strings(self, name: str) -> tuple[str, ...]:
        """A []string field."""
        value = self._raw(name)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self._mismatch(name, value, "[]string")
        for item in value:
            if not isinstance(item, str):
                raise self._mismatch(name, item, "string")
        return tuple(value)

    def string_map(self, name: str) -> dict[str, str] | None:
        """A map[string]string field (None when absent)."""
        value = self._raw(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self._mismatch(name, value, "map[string]string")
        for item in value.values():
            if not isinstance(item, str):
                raise self._mismatch(name, item, "string")
        return dict(value)

    def header(self, name: str) -> dict[str, tuple[str, ...]]:
        """A map[string][]string field (HTTP check headers)."""
        value = self._raw(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self._mismatch(name, value, "map[string][]string")
        headers: dict[str, tuple[str, ...]] = {}
        for key, values in value.items():
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise self._mismatch(name, values, "[]string")
            headers[key] = tuple(values)
        return headers

    def struct_field(self, name: str, struct: str) -> _GoStruct | None:
        """A nested struct (None when absent or null)."""
        value = self._raw(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self._mismatch(name, value, struct)
        return _GoStruct(value, struct)

    def struct_map(self, name: str, struct: str) -> dict[str, _GoStruct]:
        """A map[string]struct field (keys kept as sent; null values dropped)."""
        value = self._raw(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self._mismatch(name, value, f"map[string]{struct}")
        result: dict[str, _GoStruct] = {}
        for key, item in value.items():
            if item is None:
                continue
            if not isinstance(item, dict):
                raise self._mismatch(name, item, struct)
            result[key] = _GoStruct(item, struct)
        return result

    def struct_list(self, name: str, struct: str) -> list[_GoStruct | None]:
        """A list of nested structs (null items stay None)."""
        value = self._raw(name)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._mismatch(name, value, f"[]*{struct}")
        items: list[_GoStruct | None] = []
        for item in value:
            if item is not None and not isinstance(item, dict):
                raise self._mismatch(name, item, struct)
            items.append(None if item is None else _GoStruct(item, struct))
        return items


_UNSUPPORTED_CHECK_FIELDS: Final = (
    ("Args", "script"),
    ("ScriptArgs", "script"),
    ("Script", "script"),
    ("DockerContainerID", "docker"),
    ("GRPC", "gRPC"),
    ("H2PING", "H2PING"),
    ("UDP", "UDP"),
    ("AliasService", "alias"),
    ("AliasNode", "alias"),
    ("OSService", "OS service"),
)


def _decode_check(raw: _GoStruct) -> CheckSpec:
    unsupported = next(
        (kind for name, kind in _UNSUPPORTED_CHECK_FIELDS if raw.has(name)),
        "",
    )
    return CheckSpec(
        check_id=raw.string("CheckID"),
        name=raw.string("Name"),
        notes=raw.string("Notes"),
        status=raw.string("Status"),
        http=raw.string("HTTP"),
        method=raw.string("Method"),
        header=raw.header("Header"),
        body=raw.string("Body"),
        tcp=raw.string("TCP"),
        tls_skip_verify=raw.boolean("TLSSkipVerify"),
        disable_redirects=raw.boolean("DisableRedirects"),
        interval_ns=raw.duration("Interval"),
        timeout_ns=raw.duration("Timeout"),
        ttl_ns=raw.duration("TTL"),
        deregister_after_ns=raw.duration("DeregisterCriticalServiceAfter"),
        output_max_size=raw.integer("OutputMaxSize"),
        success_before_passing=raw.integer("SuccessBeforePassing"),
        failures_before_warning=raw.integer("FailuresBeforeWarning"),
        failures_before_critical=raw.integer("FailuresBeforeCritical"),
        unsupported=unsupported,
    )


def _validate_check(check: CheckSpec) -> None:
    """Consul's ``CheckType.Validate`` (plus the check types the double runs)."""
    if check.unsupported:
        raise RegistrationError(
            f"Invalid check: the Consul test double does not run {check.unsupported} checks "
            "(only HTTP, TCP and TTL)"
        )
    interval_check = bool(check.http or check.tcp)
    if check.interval_ns > 0 and check.ttl_ns > 0:
        raise RegistrationError("Invalid check: Interval and TTL cannot both be specified")
    if interval_check and check.interval_ns <= 0:
        raise RegistrationError(
            "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP "
            "or OSService checks"
        )
    if not interval_check and check.ttl_ns <= 0:
        raise RegistrationError("Invalid check: TTL must be > 0 for TTL checks")
    if check.output_max_size < 0:
        raise RegistrationError("Invalid check: MaxOutputMaxSize must be positive")
    if check.status and check.status not in _SEVERITY:
        raise RegistrationError("Status for checks must 'passing', 'warning', 'critical'")


_META_KEY = re.compile(r"^[a-zA-Z0-9_-]+$")


def _validate_meta(meta: Mapping[str, str] | None) -> None:
    """Consul's ``ValidateServiceMetadata`` for a typical service."""
    if not meta:
        return
    if len(meta) > 64:
        raise RegistrationError(
            "Invalid Service Meta: Node metadata cannot contain more than 64 key/value pairs"
        )
    for key, value in meta.items():
        problem = None
        if key == "":
            problem = "Key cannot be blank"
        elif not _META_KEY.match(key):
            problem = "Key contains invalid characters"
        elif len(key) > 128:
            problem = "Key is too long (limit: 128 characters)"
        elif key.startswith("consul-"):
            problem = "Key prefix 'consul-' is reserved for internal use"
        elif len(value) > 512:
            problem = "Value is too long (limit: 512 characters)"
        if problem:
            raise RegistrationError(f"Invalid Service Meta: {problem}")


def _is_unspecified(address: str) -> bool:
    """Consul's ``ipaddr.IsAny``: 0.0.0.0, :: or [::]."""
    try:
        return ipaddress.ip_address(address.removeprefix("[").removesuffix("]")).is_unspecified
    except ValueError:
        return False


def _decode_tagged_addresses(raw: _GoStruct) -> dict[str, dict[str, Any]]:
    tagged = raw.struct_map("TaggedAddresses", "structs.ServiceAddress")
    return {
        key: {"Address": entry.string("Address"), "Port": entry.integer("Port")}
        for key, entry in tagged.items()
    }


def _decode_weights(raw: _GoStruct) -> tuple[int, int]:
    weights = raw.struct_field("Weights", "structs.Weights")
    if weights is None:
        return (1, 1)
    passing, warning = weights.integer("Passing"), weights.integer("Warning")
    if passing < 1:
        raise RegistrationError("Invalid Weights: Passing must be greater than 0")
    if warning < 0:
        raise RegistrationError("Invalid Weights: Warning must be greater or equal than 0")
    return (passing, warning)


def decode_registration(body: Any) -> ServiceSpec:
    """The service in a register body, or RegistrationError with the agent's 400 message."""
    if body is not None and not isinstance(body, dict):
        raise _decode_failed(
            f"json: cannot unmarshal {_json_kind(body).split(' ')[0]} into Go value of type "
            "structs.ServiceDefinition"
        )
    raw = _GoStruct(body or {}, "ServiceDefinition")
    name, kind = raw.string("Name"), raw.string("Kind")
    service_id, address = raw.string("ID"), raw.string("Address")
    tags, port = raw.strings("Tags"), raw.integer("Port")
    meta, tagged = raw.string_map("Meta"), _decode_tagged_addresses(raw)
    enable_tag_override = raw.boolean("EnableTagOverride")
    single = raw.struct_field("Check", "structs.CheckType")
    listed = raw.struct_list("Checks", "structs.CheckType")
    checks = [_decode_check(item) for item in [single, *listed] if item is not None]
    checks = [check for check in checks if check != CheckSpec()]  # Consul drops empty checks
    if not name:
        raise RegistrationError("Missing service name")
    if _is_unspecified(address):
        raise RegistrationError("Invalid service address")
    if kind:
        raise RegistrationError(
            f"Invalid service: the Consul test double only registers typical services, "
            f"not Kind {_go_quote(kind)}"
        )
    weights = _decode_weights(raw)
    _validate_meta(meta)
    for check in checks:
        _validate_check(check)
    return ServiceSpec(
        service_id=service_id or name,
        name=name,
        tags=tags,
        address=address,
        port=port,
        meta=meta,
        tagged_addresses=tagged,
        weights=weights,
        enable_tag_override=enable_tag_override,
        checks=tuple(checks),
    )


def _default_tagged_addresses(spec: ServiceSpec) -> dict[str, dict[str, Any]]:
    """The tagged addresses the agent adds for an IP address (lan_ipv4, wan_ipv4, ...)."""
    tagged = {key: dict(value) for key, value in spec.tagged_addresses.items()}
    try:
        version = ipaddress.ip_address(spec.address).version
    except ValueError:
        return tagged
    for scope in ("lan", "wan"):
        tagged.setdefault(f"{scope}_ipv{version}", {"Address": spec.address, "Port": spec.port})
    return tagged


# --- state ---------------------------------------------------------------------


class UnknownCheck(LookupError):
    """No check with that id is registered."""


class NotATTLCheck(LookupError):
    """The check exists but is not a TTL check."""


@dataclass
class _Check:
    """A registered check: its definition and what the agent knows of it."""

    check_id: str
    name: str
    spec: CheckSpec
    service_id: str
    service_name: str
    service_tags: tuple[str, ...]
    status: str
    output: str
    catalog_output: str
    create_index: int
    modify_index: int
    generation: int
    critical_since: float | None
    ttl_deadline: float | None = None
    successes: int = 0
    failures: int = 0


@dataclass
class _Instance:
    """A registered service instance."""

    spec: ServiceSpec
    tagged_addresses: dict[str, dict[str, Any]]
    create_index: int
    modify_index: int
    check_ids: list[str]


@dataclass(frozen=True)
class KVEntry:
    """One key of the KV store."""

    key: str
    value: bytes
    flags: int
    create_index: int
    modify_index: int
    lock_index: int = 0

    def as_json(self) -> dict[str, Any]:
        """The entry as ``GET /v1/kv`` shows it (Value base64, null when empty)."""
        return {
            "LockIndex": self.lock_index,
            "Key": self.key,
            "Flags": self.flags,
            "Value": base64.b64encode(self.value).decode() if self.value else None,
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }


def _serf_check() -> dict[str, Any]:
    return {
        "Node": NODE_NAME,
        "CheckID": "serfHealth",
        "Name": "Serf Health Status",
        "Status": PASSING,
        "Notes": "",
        "Output": "Agent alive and reachable",
        "ServiceID": "",
        "ServiceName": "",
        "ServiceTags": [],
        "Type": "",
        "Interval": "",
        "Timeout": "",
        "ExposedPort": 0,
        "Definition": {},
        "CreateIndex": 1,
        "ModifyIndex": 1,
    }


class ConsulState:
    """Services, checks and keys of the double, behind one lock.

    Every method may be called from any thread. ``listener`` (set by the
    server) is told after each change that may matter to a blocking query or
    to the check runner.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.node_id = str(uuid.uuid4())
        self._index = 1  # the node, the consul service and serfHealth exist from the start
        self._tables = {"services": 1, "checks": 1, "kvs": 0}
        self._service_index: dict[str, int] = {"consul": 1}
        self._instances: dict[str, _Instance] = {}
        self._checks: dict[str, _Check] = {}
        self._kv: dict[str, KVEntry] = {}
        self._graveyard: dict[str, int] = {}
        self._generations = itertools.count(1)
        self._clock_offset = 0.0
        self._registrations: list[dict[str, Any]] = []
        self._deregistered: list[str] = []
        self._reaped: list[str] = []
        self._requests: list[tuple[str, str]] = []
        self._listener: Callable[[], None] | None = None

    # -- plumbing

    def set_listener(self, listener: Callable[[], None] | None) -> None:
        """Call ``listener`` (from any thread) after each change."""
        self._listener = listener

    def _changed(self) -> None:
        listener = self._listener
        if listener is not None:
            listener()

    def now(self) -> float:
        """The double's clock (monotonic seconds, moved on by :meth:`advance`)."""
        return time.monotonic() + self._clock_offset

    def _bump(self, *tables: str, services: tuple[str, ...] = ()) -> int:
        self._index += 1
        for table in tables:
            self._tables[table] = self._index
        for name in services:
            self._service_index[name] = self._index
        return self._index

    def _forget_empty_service_names(self, *names: str) -> None:
        # Consul drops a name's index with its last instance; readers then fall
        # back to the table indexes, which the removal has just raised.
        for name in names:
            if name != "consul" and not any(i.spec.name == name for i in self._instances.values()):
                self._service_index.pop(name, None)

    # -- journal

    def record_request(self, method: str, path: str) -> None:
        """Note one request received."""
        with self._lock:
            self._requests.append((method, path))

    def record_registration(self, body: Mapping[str, Any]) -> None:
        """Note one register body, as received."""
        with self._lock:
            self._registrations.append(copy.deepcopy(dict(body)))

    def requests(self) -> list[tuple[str, str]]:
        """(method, path with query) of every request received, in order."""
        with self._lock:
            return list(self._requests)

    def registrations(self) -> list[dict[str, Any]]:
        """Every register body received, in order."""
        with self._lock:
            return copy.deepcopy(self._registrations)

    def deregistrations(self) -> list[str]:
        """Service ids deregistered through the API, in order."""
        with self._lock:
            return list(self._deregistered)

    def reaped(self) -> list[str]:
        """Service ids deregistered for staying critical too long, in order."""
        with self._lock:
            return list(self._reaped)

    # -- services and checks

    def register(self, spec: ServiceSpec, *, replace_existing_checks: bool) -> None:
        """Add or replace a service instance and its checks (the agent's AddService)."""
        with self._lock:
            self._register_locked(spec, replace_existing_checks)
        self._changed()

    def _wanted_checks(self, spec: ServiceSpec) -> list[tuple[str, str, CheckSpec]]:
        wanted = []
        for position, check in enumerate(spec.checks, start=1):
            check_id = check.check_id or f"service:{spec.service_id}"
            if not check.check_id and len(spec.checks) > 1:
                check_id += f":{position}"
            name = check.name or f"Service '{spec.name}' check"
            wanted.append((check_id, name, check))
        return wanted

    def _register_locked(self, spec: ServiceSpec, replace_existing: bool) -> None:
        previous = self._instances.get(spec.service_id)
        wanted = self._wanted_checks(spec)
        wanted_ids = [check_id for check_id, _, _ in wanted]
        older = [] if previous is None else [c for c in previous.check_ids if c not in wanted_ids]
        stale = older if replace_existing else []
        unchanged = previous is not None and previous.spec == spec and not stale
        names = (spec.name,) if previous is None else (spec.name, previous.spec.name)
        index = self._index if unchanged else self._bump("services", "checks", services=names)
        for check_id in stale:
            self._checks.pop(check_id, None)
        kept = [c for c in older if c not in stale and c in self._checks]
        for check_id, name, check in wanted:
            self._checks[check_id] = self._new_check(
                check_id, name, check, spec, index, keep_indexes=unchanged
            )
        self._instances[spec.service_id] = _Instance(
            spec=spec,
            tagged_addresses=_default_tagged_addresses(spec),
            create_index=index if previous is None else previous.create_index,
            modify_index=index,
            check_ids=[*wanted_ids, *kept],
        )
        if previous is not None and previous.spec.name != spec.name:
            self._forget_empty_service_names(previous.spec.name)

    def _new_check(
        self,
        check_id: str,
        name: str,
        check: CheckSpec,
        spec: ServiceSpec,
        index: int,
        *,
        keep_indexes: bool,
    ) -> _Check:
        # Like the agent, keep the last status and output of a check registered
        # again, and restart its timers.
        old = self._checks.get(check_id)
        status = old.status if old else (check.status or CRITICAL)
        return _Check(
            check_id=check_id,
            name=name,
            spec=check,
            service_id=spec.service_id,
            service_name=spec.name,
            service_tags=spec.tags,
            status=status,
            output=old.output if old else "",
            catalog_output=old.catalog_output if old else "",
            create_index=old.create_index if old else index,
            modify_index=old.modify_index if old and keep_indexes else index,
            generation=next(self._generations),
            critical_since=self.now() if status == CRITICAL else None,
            ttl_deadline=time.monotonic() + check.ttl_ns / SECOND_NS if check.ttl_ns else None,
        )

    def deregister(self, service_id: str) -> bool:
        """Remove a service and its checks through the API; False when unknown."""
        with self._lock:
            removed = self._deregister_locked(service_id)
            if removed:
                self._deregistered.append(service_id)
        if removed:
            self._changed()
        return removed

    def _deregister_locked(self, service_id: str) -> bool:
        instance = self._instances.pop(service_id, None)
        if instance is None:
            return False
        for check_id in instance.check_ids:
            self._checks.pop(check_id, None)
        self._bump("services", "checks", services=(instance.spec.name,))
        self._forget_empty_service_names(instance.spec.name)
        return True

    def record_check_result(self, check_id: str, generation: int, status: str, output: str) -> None:
        """A probe's result, counted like Consul's StatusHandler; may reap the service."""
        with self._lock:
            check = self._checks.get(check_id)
            if check is None or check.generation != generation:
                return
            changed = self._count_result_locked(check, status, output)
            changed = self._reap_locked() or changed
        if changed:
            self._changed()

    def _count_result_locked(self, check: _Check, status: str, output: str) -> bool:
        spec = check.spec
        if status in (PASSING, WARNING):
            check.successes, check.failures = check.successes + 1, 0
            if check.successes >= spec.success_before_passing:
                return self._set_status_locked(check, status, output)
            return False
        check.successes, check.failures = 0, check.failures + 1
        if check.failures >= spec.failures_before_critical:
            return self._set_status_locked(check, CRITICAL, output)
        if check.failures >= (spec.failures_before_warning or spec.failures_before_critical):
            return self._set_status_locked(check, WARNING, output)
        return False

    def _set_status_locked(self, check: _Check, status: str, output: str) -> bool:
        if status == CRITICAL:
            if check.status != CRITICAL or check.critical_since is None:
                check.critical_since = self.now()
        else:
            check.critical_since = None
        check.output = output
        if check.status == status:
            return False  # an output-only change is not synced at once (module docstring)
        check.status = status
        check.catalog_output = output
        check.modify_index = self._bump("checks", services=(check.service_name,))
        return True

    def update_ttl(self, check_id: str, status: str, output: str) -> None:
        """Set a TTL check's status and restart its TTL (``/v1/agent/check/pass`` etc.)."""
        with self._lock:
            check = self._checks.get(check_id)
            if check is None:
                raise UnknownCheck(check_id)
            if check.spec.kind != "ttl":
                raise NotATTLCheck(check_id)
            check.ttl_deadline = time.monotonic() + check.spec.ttl_ns / SECOND_NS
            changed = self._set_status_locked(check, status, output[-check.spec.max_output :])
            changed = self._reap_locked() or changed
        if changed:
            self._changed()

    def ttl_remaining(self, check_id: str, generation: int) -> float | None:
        """Seconds until a TTL check expires (<= 0: due); None once gone or expired."""
        with self._lock:
            check = self._checks.get(check_id)
            if check is None or check.generation != generation or check.ttl_deadline is None:
                return None
            return check.ttl_deadline - time.monotonic()

    def expire_ttl(self, check_id: str, generation: int) -> None:
        """Turn a TTL check whose TTL ran out critical, as Consul's CheckTTL does."""
        with self._lock:
            check = self._checks.get(check_id)
            if check is None or check.generation != generation or check.ttl_deadline is None:
                return
            check.ttl_deadline = None
            output = "TTL expired"
            if check.output:
                output += f" (last output before timeout follows): {check.output}"
            changed = self._set_status_locked(check, CRITICAL, output)
            changed = self._reap_locked() or changed
        if changed:
            self._changed()

    def advance(self, seconds: float) -> None:
        """Move the double's clock on (critical-deregistration timer only) and reap."""
        with self._lock:
            self._clock_offset += seconds
            changed = self._reap_locked()
        if changed:
            self._changed()

    def _reap_locked(self) -> bool:
        """Deregister services critical for longer than their DeregisterCriticalServiceAfter."""
        now, reaped = self.now(), False
        for check_id in list(self._checks):
            check = self._checks.get(check_id)
            if check is None or check.critical_since is None or check.status != CRITICAL:
                continue
            limit = check.spec.deregister_after_ns
            if limit <= 0:
                continue
            limit = max(limit, MIN_DEREGISTER_AFTER_NS)
            overdue = (now - check.critical_since) * SECOND_NS > limit
            if overdue and self._deregister_locked(check.service_id):
                self._reaped.append(check.service_id)
                reaped = True
        return reaped

    def runnable_checks(self) -> dict[str, tuple[int, CheckSpec]]:
        """Check id -> (generation, definition) of every registered check."""
        with self._lock:
            return {cid: (c.generation, c.spec) for cid, c in self._checks.items()}

    def service_status(self, service_id: str) -> str | None:
        """The worst status among a service's checks (passing without checks); None if unknown."""
        with self._lock:
            instance = self._instances.get(service_id)
            if instance is None:
                return None
            statuses = [self._checks[c].status for c in instance.check_ids if c in self._checks]
            return max(statuses, key=_SEVERITY.__getitem__, default=PASSING)

    def deregister_critical_after(self, service_id: str) -> float | None:
        """The smallest DeregisterCriticalServiceAfter a service asked for, in seconds."""
        with self._lock:
            instance = self._instances.get(service_id)
            if instance is None:
                return None
            asked = [c.deregister_after_ns for c in instance.spec.checks if c.deregister_after_ns]
            return min(asked) / SECOND_NS if asked else None

    # -- views

    def _check_view(self, check: _Check, *, catalog: bool) -> dict[str, Any]:
        return {
            "Node": NODE_NAME,
            "CheckID": check.check_id,
            "Name": check.name,
            "Status": check.status,
            "Notes": check.spec.notes,
            "Output": check.catalog_output if catalog else check.output,
            "ServiceID": check.service_id,
            "ServiceName": check.service_name,
            "ServiceTags": list(check.service_tags),
            "Type": check.spec.kind,
            "Interval": format_go_duration(check.spec.interval_ns)
            if check.spec.interval_ns
            else "",
            "Timeout": format_go_duration(check.spec.timeout_ns) if check.spec.timeout_ns else "",
            "ExposedPort": 0,
            "Definition": {},
            "CreateIndex": check.create_index if catalog else 0,
            "ModifyIndex": check.modify_index if catalog else 0,
        }

    @staticmethod
    def _agent_service_view(instance: _Instance) -> dict[str, Any]:
        spec = instance.spec
        view: dict[str, Any] = {
            "ID": spec.service_id,
            "Service": spec.name,
            "Tags": list(spec.tags),
            "Meta": dict(spec.meta or {}),
            "Port": spec.port,
            "Address": spec.address,
        }
        if instance.tagged_addresses:
            view["TaggedAddresses"] = copy.deepcopy(instance.tagged_addresses)
        view["Weights"] = {"Passing": spec.weights[0], "Warning": spec.weights[1]}
        view["EnableTagOverride"] = spec.enable_tag_override
        view["Datacenter"] = DATACENTER
        return view

    @staticmethod
    def _catalog_service_view(instance: _Instance) -> dict[str, Any]:
        spec = instance.spec
        view: dict[str, Any] = {
            "ID": spec.service_id,
            "Service": spec.name,
            "Tags": list(spec.tags),
            "Address": spec.address,
        }
        if instance.tagged_addresses:
            view["TaggedAddresses"] = copy.deepcopy(instance.tagged_addresses)
        view.update(
            {
                "Meta": None if spec.meta is None else dict(spec.meta),
                "Port": spec.port,
                "Weights": {"Passing": spec.weights[0], "Warning": spec.weights[1]},
                "EnableTagOverride": spec.enable_tag_override,
                "Proxy": {"Mode": "", "MeshGateway": {}, "Expose": {}},
                "Connect": {},
                "CreateIndex": instance.create_index,
                "ModifyIndex": instance.modify_index,
            }
        )
        return view

    def _node_view(self) -> dict[str, Any]:
        return {
            "ID": self.node_id,
            "Node": NODE_NAME,
            "Address": NODE_ADDRESS,
            "Datacenter": DATACENTER,
            "TaggedAddresses": {
                "lan": NODE_ADDRESS,
                "lan_ipv4": NODE_ADDRESS,
                "wan": NODE_ADDRESS,
                "wan_ipv4": NODE_ADDRESS,
            },
            "Meta": {"consul-network-segment": ""},
            "CreateIndex": 1,
            "ModifyIndex": 1,
        }

    def _consul_entry(self) -> dict[str, Any]:
        consul = _Instance(ServiceSpec("consul", "consul", port=8300, meta={}), {}, 1, 1, [])
        return {
            "Node": self._node_view(),
            "Service": self._catalog_service_view(consul),
            "Checks": [_serf_check()],
        }

    def agent_services(self) -> tuple[int, dict[str, dict[str, Any]]]:
        """``GET /v1/agent/services``: (index, id -> service)."""
        with self._lock:
            view = {sid: self._agent_service_view(i) for sid, i in self._instances.items()}
            return self._index, view

    def agent_checks(self) -> tuple[int, dict[str, dict[str, Any]]]:
        """``GET /v1/agent/checks``: (index, check id -> check)."""
        with self._lock:
            view = {cid: self._check_view(c, catalog=False) for cid, c in self._checks.items()}
            return self._index, view

    def health_service(
        self, name: str, tags: list[str], *, passing_only: bool
    ) -> tuple[int, list[dict[str, Any]]]:
        """``GET /v1/health/service/<name>``: (index, entries)."""
        with self._lock:
            index = self._service_index.get(name) or max(
                self._tables["services"], self._tables["checks"]
            )
            entries = [self._consul_entry()] if name == "consul" else []
            wanted_tags = {tag.lower() for tag in tags}
            for service_id in sorted(self._instances, key=str.lower):
                instance = self._instances[service_id]
                own_tags = {tag.lower() for tag in instance.spec.tags}
                if instance.spec.name != name or not wanted_tags <= own_tags:
                    continue
                checks = [_serf_check()] + [
                    self._check_view(self._checks[c], catalog=True)
                    for c in instance.check_ids
                    if c in self._checks
                ]
                checks.sort(key=lambda check: str(check["CheckID"]).lower())
                entries.append(
                    {
                        "Node": self._node_view(),
                        "Service": self._catalog_service_view(instance),
                        "Checks": checks,
                    }
                )
            if passing_only:
                entries = [e for e in entries if all(c["Status"] == PASSING for c in e["Checks"])]
            return max(index, 1), entries

    def catalog_services(self) -> tuple[int, dict[str, list[str]]]:
        """``GET /v1/catalog/services``: (index, name -> tags)."""
        with self._lock:
            tags: dict[str, set[str]] = {"consul": set()}
            for instance in self._instances.values():
                tags.setdefault(instance.spec.name, set()).update(instance.spec.tags)
            return self._tables["services"], {name: sorted(t) for name, t in sorted(tags.items())}

    # -- KV

    def _prefix_index_locked(self, prefix: str, entries: list[KVEntry]) -> int:
        table = self._tables["kvs"]
        if not prefix:
            return max(table, 1)
        latest = max((entry.modify_index for entry in entries), default=0)
        buried = max((i for key, i in self._graveyard.items() if key.startswith(prefix)), default=0)
        return max(latest, buried) or max(table, 1)

    def kv_get(self, key: str) -> tuple[int, KVEntry | None]:
        """One key: (its ModifyIndex, or the table index when missing; the entry)."""
        with self._lock:
            entry = self._kv.get(key)
            if entry is None:
                return max(self._tables["kvs"], 1), None
            return entry.modify_index, entry

    def kv_list(self, prefix: str) -> tuple[int, list[KVEntry]]:
        """Every key under ``prefix``, sorted: (index, entries)."""
        with self._lock:
            entries = [self._kv[key] for key in sorted(self._kv) if key.startswith(prefix)]
            return self._prefix_index_locked(prefix, entries), entries

    def kv_keys(self, prefix: str, separator: str) -> tuple[int, list[str]]:
        """The key names under ``prefix``, cut after ``separator`` (``?keys``)."""
        with self._lock:
            entries = [self._kv[key] for key in sorted(self._kv) if key.startswith(prefix)]
            names: list[str] = []
            for entry in entries:
                name = entry.key
                if separator:
                    cut = name.find(separator, len(prefix))
                    if cut >= 0:
                        name = name[: cut + len(separator)]
                if not names or names[-1] != name:
                    names.append(name)
            return self._prefix_index_locked(prefix, entries), names

    def kv_set(
        self, key: str, value: bytes, *, flags: int = 0, cas: int | None = None
    ) -> int | None:
        """Set a key; with ``cas`` only if its ModifyIndex matches (0: only if absent).

        Returns the new ModifyIndex, or None when the check-and-set failed.
        """
        with self._lock:
            existing = self._kv.get(key)
            if cas is not None and (
                (cas == 0 and existing is not None)
                or (cas > 0 and (existing is None or existing.modify_index != cas))
            ):
                return None
            index = self._bump("kvs")
            self._kv[key] = KVEntry(
                key=key,
                value=value,
                flags=flags,
                create_index=existing.create_index if existing else index,
                modify_index=index,
                lock_index=existing.lock_index if existing else 0,
            )
        self._changed()
        return index

    def kv_delete(self, key: str, *, recurse: bool = False, cas: int | None = None) -> bool:
        """Delete a key (or a prefix); False only when a check-and-set fails."""
        with self._lock:
            if recurse:
                doomed = [name for name in self._kv if name.startswith(key)]
            else:
                existing = self._kv.get(key)
                if cas is not None and existing is not None and existing.modify_index != cas:
                    return False
                doomed = [key] if existing is not None else []
            if not doomed:
                return True
            index = self._bump("kvs")
            for name in doomed:
                del self._kv[name]
                self._graveyard[name] = index
        self._changed()
        return True


# --- checks --------------------------------------------------------------------


def _error_reason(error: OSError) -> str:
    if error.errno is not None:
        return os.strerror(error.errno).lower()
    return str(error)


async def probe_http(spec: CheckSpec) -> tuple[str, str]:
    """Run one HTTP check: (status, output), in the words of Consul's CheckHTTP."""
    method = spec.method or "GET"
    operation = method[:1].upper() + method[1:].lower()
    headers: list[tuple[str, str]] = [(k, v) for k, vs in spec.header.items() for v in vs]
    given = {name.lower() for name, _ in headers}
    if "user-agent" not in given:
        headers.append(("User-Agent", "Consul Health Check"))
    if "accept" not in given:
        headers.append(("Accept", "text/plain, text/*, */*"))
    # Consul disables keep-alive for checks; TLSSkipVerify turns verification off.
    connector = aiohttp.TCPConnector(force_close=True, ssl=not spec.tls_skip_verify)
    timeout = aiohttp.ClientTimeout(total=spec.timeout_seconds)
    try:
        async with (
            aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
            session.request(
                method,
                spec.http,
                headers=headers,
                data=spec.body.encode() if spec.body else None,
                allow_redirects=not spec.disable_redirects,
            ) as response,
        ):
            body = await response.read()
    except TimeoutError:
        return CRITICAL, (
            f"{operation} {_go_quote(spec.http)}: context deadline exceeded "
            "(Client.Timeout exceeded while awaiting headers)"
        )
    except aiohttp.ClientConnectorError as error:
        return CRITICAL, (
            f"{operation} {_go_quote(spec.http)}: dial tcp {error.host}:{error.port}: "
            f"connect: {_error_reason(error.os_error)}"
        )
    except (aiohttp.ClientError, OSError, ValueError) as error:
        return CRITICAL, f"{operation} {_go_quote(spec.http)}: {error}"
    output = body[-spec.max_output :].decode(errors="replace")
    result = f"HTTP {method} {spec.http}: {response.status} {response.reason} Output: {output}"
    if 200 <= response.status <= 299:
        return PASSING, result
    if response.status == 429:
        return WARNING, result
    return CRITICAL, result


async def probe_tcp(spec: CheckSpec) -> tuple[str, str]:
    """Run one TCP check: (status, output), in the words of Consul's CheckTCP."""
    host, _, port = spec.tcp.rpartition(":")
    try:
        async with asyncio.timeout(spec.timeout_seconds):
            _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
    except TimeoutError:
        return CRITICAL, f"dial tcp {spec.tcp}: i/o timeout"
    except OSError as error:
        return CRITICAL, f"dial tcp {spec.tcp}: connect: {_error_reason(error)}"
    except ValueError as error:
        return CRITICAL, f"dial tcp {spec.tcp}: {error}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return PASSING, f"TCP connect {spec.tcp}: Success"


class _CheckRunner:
    """Runs each registered check on its interval, on the double's event loop."""

    def __init__(self, state: ConsulState) -> None:
        self._state = state
        self._tasks: dict[str, tuple[int, asyncio.Task[None]]] = {}
        self._ttl_resets: dict[str, asyncio.Event] = {}

    def reconcile(self, running: bool) -> None:
        """Start tasks for new checks and cancel those of removed or replaced ones."""
        wanted = self._state.runnable_checks() if running else {}
        for check_id, (generation, task) in list(self._tasks.items()):
            if wanted.get(check_id, (0, None))[0] != generation:
                task.cancel()
                del self._tasks[check_id]
                self._ttl_resets.pop(check_id, None)
        for check_id, (generation, spec) in wanted.items():
            if check_id not in self._tasks:
                task = asyncio.create_task(self._run(check_id, generation, spec))
                self._tasks[check_id] = (generation, task)

    def reset_ttl(self, check_id: str) -> None:
        """Wake a TTL check's task after its status was set."""
        event = self._ttl_resets.get(check_id)
        if event is not None:
            event.set()

    async def stop(self) -> None:
        """Cancel every check task and wait for them."""
        tasks = [task for _, task in self._tasks.values()]
        self._tasks.clear()
        self._ttl_resets.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, check_id: str, generation: int, spec: CheckSpec) -> None:
        if spec.kind == "ttl":
            await self._run_ttl(check_id, generation)
            return
        probe = probe_http if spec.kind == "http" else probe_tcp
        # Consul staggers the first run randomly within one interval.
        await asyncio.sleep(random.uniform(0, spec.interval_seconds))
        while True:
            try:
                status, output = await probe(spec)
            except Exception as error:  # a probe must never kill its task
                status, output = CRITICAL, f"{type(error).__name__}: {error}"
            self._state.record_check_result(check_id, generation, status, output)
            await asyncio.sleep(spec.interval_seconds)

    async def _run_ttl(self, check_id: str, generation: int) -> None:
        reset = self._ttl_resets.setdefault(check_id, asyncio.Event())
        while True:
            remaining = self._state.ttl_remaining(check_id, generation)
            if remaining is not None and remaining <= 0:
                self._state.expire_ttl(check_id, generation)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(reset.wait(), remaining)
            reset.clear()


# --- HTTP ----------------------------------------------------------------------


class ConsulHTTPError(Exception):
    """An answer other than 200: Consul's status and plain-text message."""

    def __init__(
        self,
        status: int,
        message: str = "",
        *,
        index: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.index = index
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        """The error as Consul writes it."""
        headers = dict(self.headers)
        if self.index is not None:
            headers.update(_meta_headers(self.index))
        if not self.message:
            return web.Response(status=self.status, headers=headers)
        return web.Response(
            status=self.status, text=self.message, content_type="text/plain", headers=headers
        )


def _meta_headers(index: int) -> dict[str, str]:
    return {
        "X-Consul-Index": str(max(index, 1)),
        "X-Consul-KnownLeader": "true",
        "X-Consul-LastContact": "0",
    }


def _json_response(request: web.Request, payload: Any, *, index: int | None) -> web.Response:
    if "pretty" in request.query:
        text = json.dumps(payload, indent=4, ensure_ascii=False) + "\n"
    else:
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    headers = _meta_headers(index) if index is not None else {}
    return web.Response(text=text, content_type="application/json", headers=headers)


def _require_method(request: web.Request, *allowed: str) -> None:
    if request.method not in allowed:
        raise ConsulHTTPError(
            405, f"method {request.method} not allowed", headers={"Allow": ", ".join(allowed)}
        )


def _query_flag(request: web.Request, name: str) -> bool:
    """A bool query parameter read like Consul's ``getBoolQueryParam`` (bare = true)."""
    if name not in request.query:
        return False
    value = request.query.get(name, "")
    if value == "":
        return True
    try:
        return parse_go_bool(value)
    except GoSyntaxError as error:
        raise ConsulHTTPError(400, f"Invalid value for ?{name}") from error


def _query_uint(request: web.Request, name: str) -> int | None:
    """A uint query parameter; Consul answers 500 with Go's error when it is not one."""
    if name not in request.query:
        return None
    try:
        return parse_go_uint(request.query.get(name, ""))
    except GoSyntaxError as error:
        raise ConsulHTTPError(500, str(error)) from error


def _check_query_scope(request: web.Request) -> None:
    datacenter = request.query.get("dc", "")
    if datacenter and datacenter != DATACENTER:
        raise ConsulHTTPError(500, "No path to datacenter")
    if "filter" in request.query:
        raise ConsulHTTPError(400, "the Consul test double does not implement ?filter=")


def _blocking_options(request: web.Request) -> tuple[int, float]:
    """(minimum index, seconds to wait) of a blocking query, jitter included."""
    wait_ns = DEFAULT_QUERY_WAIT_NS
    if wait := request.query.get("wait", ""):
        try:
            wait_ns = parse_go_duration(wait)
        except GoSyntaxError as error:
            raise ConsulHTTPError(400, "Invalid wait time") from error
    if wait_ns <= 0:
        wait_ns = DEFAULT_QUERY_WAIT_NS
    wait_ns = min(wait_ns, MAX_QUERY_WAIT_NS)
    wait_ns += random.randrange(max(wait_ns // 16, 1))
    min_index = 0
    if index := request.query.get("index", ""):
        try:
            min_index = parse_go_uint(index)
        except GoSyntaxError as error:
            raise ConsulHTTPError(400, "Invalid index") from error
    return min_index, wait_ns / SECOND_NS


class _ChangeFeed:
    """Wakes blocking queries after each state change (lives on the double's loop)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def current(self) -> asyncio.Event:
        """The event the next change sets."""
        return self._event

    def publish(self) -> None:
        """Wake everyone waiting on the current event."""
        self._event.set()
        self._event = asyncio.Event()


class _AgentServer:
    """The HTTP side of the double: routes, blocking queries, start and stop."""

    def __init__(self, state: ConsulState) -> None:
        self._state = state
        self._changes = _ChangeFeed()
        self._checks = _CheckRunner(state)
        self._runner: web.AppRunner | None = None

    def state_changed(self) -> None:
        """Wake blocking queries and bring check tasks in line (called on the loop)."""
        self._changes.publish()
        self._checks.reconcile(running=self._runner is not None)

    async def serve(self, port: int) -> int:
        """Listen on 127.0.0.1:``port`` (0: any free port); return the port."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((HOST, port))
            sock.setblocking(False)
            runner = web.AppRunner(
                self._application(), access_log=None, shutdown_timeout=_SHUTDOWN_GRACE_SECONDS
            )
            await runner.setup()
            await web.SockSite(runner, sock).start()
        except BaseException:
            sock.close()
            raise
        self._runner = runner
        self._checks.reconcile(running=True)
        bound: int = sock.getsockname()[1]
        return bound

    async def shutdown(self) -> None:
        """Stop listening, cut open connections and stop the checks (state stays)."""
        runner, self._runner = self._runner, None
        await self._checks.stop()
        if runner is not None:
            await runner.cleanup()

    def _application(self) -> web.Application:
        app = web.Application(
            middlewares=[self._record, self._errors], client_max_size=4 * KV_MAX_VALUE_SIZE
        )
        routes = [
            ("/v1/agent/service/register", self._register),
            ("/v1/agent/service/deregister/{service_id:.*}", self._deregister),
            ("/v1/agent/services", self._agent_services),
            ("/v1/agent/checks", self._agent_checks),
            ("/v1/agent/check/update/{check_id:.*}", self._check_update),
            ("/v1/agent/check/{action:pass|warn|fail}/{check_id:.*}", self._check_ttl),
            ("/v1/health/service/{service:.*}", self._health_service),
            ("/v1/catalog/services", self._catalog_services),
            ("/v1/kv/{key:.*}", self._kv),
            ("/{tail:.*}", self._not_found),
        ]
        for path, handler in routes:
            app.router.add_route("*", path, handler)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self._state.record_request(request.method, request.raw_path)
        return await handler(request)

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ConsulHTTPError as error:
            return error.response()

    async def _watch(
        self, request: web.Request, read: Callable[[], tuple[int, T]]
    ) -> tuple[int, T]:
        """``read()`` now, or once its index passes ``?index`` or ``?wait`` runs out."""
        min_index, wait = _blocking_options(request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            changed = self._changes.current()
            index, result = read()
            remaining = deadline - loop.time()
            if min_index == 0 or index > min_index or remaining <= 0:
                return index, result
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    # -- agent

    async def _register(self, request: web.Request) -> web.Response:
        _require_method(request, "PUT")
        raw = await request.read()
        if not raw.strip():
            raise ConsulHTTPError(400, "Request decode failed: EOF")
        try:
            body = json.loads(raw)
        except ValueError as error:
            raise ConsulHTTPError(400, f"Request decode failed: {error}") from error
        if isinstance(body, dict):
            self._state.record_registration(body)
        try:
            spec = decode_registration(body)
        except RegistrationError as error:
            raise ConsulHTTPError(400, str(error)) from error
        replace_checks = request.query.getall("replace-existing-checks", [])
        replace = bool(replace_checks) and replace_checks[0] in ("", "true")
        self._state.register(spec, replace_existing_checks=replace)
        return web.Response()

    async def _deregister(self, request: web.Request) -> web.Response:
        _require_method(request, "PUT")
        service_id = request.match_info["service_id"]
        if not self._state.deregister(service_id):
            raise ConsulHTTPError(
                404,
                f"Unknown service ID {_go_quote(service_id)}. "
                "Ensure that the service ID is passed, not the service name.",
            )
        return web.Response()

    async def _agent_services(self, request: web.Request) -> web.Response:
        _require_method(request, "GET")
        _check_query_scope(request)
        index, services = self._state.agent_services()
        return _json_response(request, services, index=index)

    async def _agent_checks(self, request: web.Request) -> web.Response:
        _require_method(request, "GET")
        _check_query_scope(request)
        index, checks = self._state.agent_checks()
        return _json_response(request, checks, index=index)

    async def _check_ttl(self, request: web.Request) -> web.Response:
        _require_method(request, "PUT")
        status = {"pass": PASSING, "warn": WARNING, "fail": CRITICAL}[request.match_info["action"]]
        self._set_ttl(request.match_info["check_id"], status, request.query.get("note", ""))
        return web.Response()

    async def _check_update(self, request: web.Request) -> web.Response:
        _require_method(request, "PUT")
        try:
            body = json.loads(await request.read() or b"{}")
            if not isinstance(body, dict):
                raise _decode_failed(f"json: cannot unmarshal {_json_kind(body)} into Go value")
            update = _GoStruct(body, "agent.checkUpdate")
            status, output = update.string("Status"), update.string("Output")
        except RegistrationError as error:
            raise ConsulHTTPError(400, str(error)) from error
        except ValueError as error:
            raise ConsulHTTPError(400, f"Request decode failed: {error}") from error
        if status not in _SEVERITY:
            raise ConsulHTTPError(400, f"Invalid check status: '{status}'")
        self._set_ttl(request.match_info["check_id"], status, output)
        return web.Response()

    def _set_ttl(self, check_id: str, status: str, output: str) -> None:
        try:
            self._state.update_ttl(check_id, status, output)
        except UnknownCheck as error:
            raise ConsulHTTPError(
                404,
                f"Unknown check ID {_go_quote(check_id)}. "
                "Ensure that the check ID is passed, not the check name.",
            ) from error
        except NotATTLCheck as error:
            raise ConsulHTTPError(
                500, f"CheckID {_go_quote(check_id)} does not have associated TTL"
            ) from error
        self._checks.reset_ttl(check_id)

    # -- health and catalog

    async def _health_service(self, request: web.Request) -> web.Response:
        _require_method(request, "GET")
        _check_query_scope(request)
        name = request.match_info["service"]
        if not name:
            raise ConsulHTTPError(400, "Missing service name")
        passing = _query_flag(request, "passing")
        tags = request.query.getall("tag", [])
        index, entries = await self._watch(
            request, lambda: self._state.health_service(name, tags, passing_only=passing)
        )
        return _json_response(request, entries, index=index)

    async def _catalog_services(self, request: web.Request) -> web.Response:
        _require_method(request, "GET")
        _check_query_scope(request)
        index, services = await self._watch(request, self._state.catalog_services)
        return _json_response(request, services, index=index)

    # -- KV

    async def _kv(self, request: web.Request) -> web.StreamResponse:
        _require_method(request, "GET", "PUT", "DELETE")
        datacenter = request.query.get("dc", "")
        if datacenter and datacenter != DATACENTER:
            raise ConsulHTTPError(500, "No path to datacenter")
        key = request.match_info["key"]
        if request.method == "GET":
            if "keys" in request.query:
                return await self._kv_keys(request, key)
            return await self._kv_get(request, key)
        if request.method == "PUT":
            return await self._kv_put(request, key)
        return self._kv_delete(request, key)

    async def _kv_keys(self, request: web.Request, prefix: str) -> web.Response:
        separator = request.query.get("separator", request.query.get("seperator", ""))
        index, keys = await self._watch(request, lambda: self._state.kv_keys(prefix, separator))
        if not keys and prefix:
            raise ConsulHTTPError(404, index=index)
        return _json_response(request, keys, index=index)

    async def _kv_get(self, request: web.Request, key: str) -> web.Response:
        recurse = "recurse" in request.query
        if not recurse and not key:
            raise ConsulHTTPError(400, "Missing key name")

        def read() -> tuple[int, list[KVEntry]]:
            if recurse:
                return self._state.kv_list(key)
            index, entry = self._state.kv_get(key)
            return index, [] if entry is None else [entry]

        index, entries = await self._watch(request, read)
        if not entries:
            raise ConsulHTTPError(404, index=index)
        if "raw" in request.query and not recurse:
            headers = {
                **_meta_headers(index),
                "Content-Type": "text/plain",
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "sandbox",
            }
            return web.Response(body=entries[0].value, headers=headers)
        return _json_response(request, [entry.as_json() for entry in entries], index=index)

    async def _kv_put(self, request: web.Request, key: str) -> web.Response:
        if not key:
            raise ConsulHTTPError(400, "Missing key name")
        _refuse_conflicting_flags(request, "cas", "acquire", "release")
        if "acquire" in request.query or "release" in request.query:
            raise ConsulHTTPError(
                400, "the Consul test double does not implement sessions (acquire/release)"
            )
        flags = _query_uint(request, "flags") or 0
        cas = _query_uint(request, "cas")
        length = request.content_length
        if length is not None and length > KV_MAX_VALUE_SIZE:
            raise _value_too_large(length)
        value = await request.read()
        if len(value) > KV_MAX_VALUE_SIZE:
            raise _value_too_large(len(value))
        stored = self._state.kv_set(key, value, flags=flags, cas=cas)
        return _json_response(request, stored is not None, index=None)

    def _kv_delete(self, request: web.Request, key: str) -> web.Response:
        _refuse_conflicting_flags(request, "recurse", "cas")
        recurse = "recurse" in request.query
        if not recurse and not key:
            raise ConsulHTTPError(400, "Missing key name")
        cas = _query_uint(request, "cas")
        deleted = self._state.kv_delete(key, recurse=recurse, cas=cas)
        return _json_response(request, deleted, index=None)

    async def _not_found(self, request: web.Request) -> web.Response:
        raise ConsulHTTPError(
            404,
            "404 page not found (the Consul test double does not implement "
            f"{request.method} {request.path})",
        )


def _refuse_conflicting_flags(request: web.Request, *flags: str) -> None:
    if sum(flag in request.query for flag in flags) > 1:
        encoded = urlencode(sorted(request.query.items()))
        raise ConsulHTTPError(400, f"Conflicting flags: {encoded}\n")


def _value_too_large(size: int) -> ConsulHTTPError:
    return ConsulHTTPError(
        413,
        f"Request body({size} bytes) too large, max size: {KV_MAX_VALUE_SIZE} bytes. See "
        "https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size.",
    )


# --- the double ------------------------------------------------------------------


async def _create_server(state: ConsulState) -> _AgentServer:
    return _AgentServer(state)


async def _cancel_remaining_tasks() -> None:
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class ConsulDouble:
    """A Consul agent test double serving on 127.0.0.1 from its own thread and event loop.

    ``port`` 0 picks a free port at the first :meth:`start` and keeps it.
    :meth:`stop` stops answering (connections are refused, open ones cut) but
    keeps the state and the port; :meth:`start` resumes. :meth:`close` ends
    it for good. As a context manager it starts on entry and closes on exit.
    The inspection methods may be called from any thread.
    """

    def __init__(self, port: int = 0) -> None:
        self._port = port
        self._state = ConsulState()
        self._control = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: _AgentServer | None = None
        self._serving = False
        self._closed = False

    def __enter__(self) -> ConsulDouble:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- where

    @property
    def host(self) -> str:
        """The address the double listens on."""
        return HOST

    @property
    def port(self) -> int:
        """The port (0 until the first :meth:`start` when constructed with 0)."""
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{HOST}:{self._port}"

    # -- lifecycle

    def start(self) -> None:
        """Serve (no-op when already serving); returns once the port accepts connections."""
        with self._control:
            if self._closed:
                raise RuntimeError("this ConsulDouble is closed")
            if self._serving:
                return
            server = self._ensure_server()
            self._port = self._call(server.serve(self._port))
            self._serving = True

    def stop(self) -> None:
        """Stop answering, keeping every service, check, key and the port."""
        with self._control:
            if self._serving and self._server is not None:
                self._call(self._server.shutdown())
            self._serving = False

    def close(self) -> None:
        """Stop for good and end the background thread."""
        with self._control:
            if self._closed:
                return
            self._closed = True
            self._state.set_listener(None)
            loop, thread, server = self._loop, self._thread, self._server
            if loop is None or thread is None or server is None:
                return
            if self._serving:
                self._call(server.shutdown())
            self._serving = False
            self._call(_cancel_remaining_tasks())
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=_CALL_TIMEOUT_SECONDS)
            loop.close()

    def _ensure_server(self) -> _AgentServer:
        if self._server is not None:
            return self._server
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="consul-double", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        self._server = self._call(_create_server(self._state))
        self._state.set_listener(self._notify_server)
        return self._server

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout=_CALL_TIMEOUT_SECONDS)

    def _notify_server(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(server.state_changed)

    # -- inspection

    @property
    def received_registrations(self) -> list[dict[str, Any]]:
        """Every JSON object PUT to /v1/agent/service/register, as received, in order.

        Refused ones included; bodies that are not objects are only in :meth:`requests`.
        """
        return self._state.registrations()

    @property
    def deregistered(self) -> list[str]:
        """Every service id deregistered through the API, in order."""
        return self._state.deregistrations()

    @property
    def reaped(self) -> list[str]:
        """Every service id deregistered for staying critical too long, in order."""
        return self._state.reaped()

    def services(self) -> dict[str, dict[str, Any]]:
        """Instance id -> service, as ``GET /v1/agent/services`` shows it."""
        return self._state.agent_services()[1]

    def checks(self) -> dict[str, dict[str, Any]]:
        """Check id -> check, as ``GET /v1/agent/checks`` shows it."""
        return self._state.agent_checks()[1]

    def check_status(self, service_id: str) -> str | None:
        """The worst status of a service's checks ("passing" without checks); None if unknown."""
        return self._state.service_status(service_id)

    def deregister_critical_after(self, service_id: str) -> float | None:
        """The smallest DeregisterCriticalServiceAfter the service's checks asked for, in
        seconds, as registered (before Consul's one-minute minimum); None when none did."""
        return self._state.deregister_critical_after(service_id)

    def kv_put(self, key: str, value: str | bytes) -> int:
        """Set a key (flags 0) and wake its watchers; return the new ModifyIndex."""
        data = value.encode() if isinstance(value, str) else value
        index = self._state.kv_set(key, data)
        assert index is not None  # no check-and-set asked
        return index

    def kv_delete(self, key: str) -> None:
        """Delete a key (nothing happens when it is missing)."""
        self._state.kv_delete(key)

    def kv_get(self, key: str) -> bytes | None:
        """A key's value (b"" when empty), or None when missing."""
        entry = self._state.kv_get(key)[1]
        return None if entry is None else entry.value

    def advance(self, seconds: float) -> None:
        """Move the clock of the critical-deregistration timer on; reaps at once."""
        self._state.advance(seconds)

    def requests(self) -> list[tuple[str, str]]:
        """(method, path with query) of every request received, in order."""
        return self._state.requests()


@pytest.fixture
def consul_double() -> Iterator[ConsulDouble]:
    """A started Consul agent double on a free port, closed after the test."""
    with ConsulDouble() as double:
        yield double


__all__ = [
    "CRITICAL",
    "PASSING",
    "WARNING",
    "CheckSpec",
    "ConsulDouble",
    "ConsulState",
    "GoSyntaxError",
    "KVEntry",
    "RegistrationError",
    "ServiceSpec",
    "consul_double",
    "decode_registration",
    "format_go_duration",
    "parse_go_bool",
    "parse_go_duration",
    "parse_go_uint",
    "probe_http",
    "probe_tcp",
]
