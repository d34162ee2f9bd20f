"""The Consul agent test double answers as Consul's HTTP API documentation says.

Checks run against a small real HTTP server started here; timings are only
bounded to stop a broken test, never asserted as speed.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

import consul.aio  # type: ignore[import-untyped]
import httpx
import pytest
from consul import Check

from meshmart_common.messaging.testing import eventually
from meshmart_common.testing import free_port
from tests.consul_double import (
    ConsulDouble,
    GoSyntaxError,
    format_go_duration,
    parse_go_duration,
)

# --- helpers ---------------------------------------------------------------------


def register(double: ConsulDouble, body: Any, **params: str) -> httpx.Response:
    """PUT a body to /v1/agent/service/register."""
    return httpx.put(f"{double.url}/v1/agent/service/register", json=body, params=params)


def index_of(response: httpx.Response) -> int:
    """The X-Consul-Index of an answer (it must be there)."""
    return int(response.headers["X-Consul-Index"])


def wait_until(condition: Callable[[], Any], *, within: float = 15.0, what: str = "it") -> Any:
    """Poll ``condition`` until it is truthy (``within`` only bounds a broken test)."""
    deadline = time.monotonic() + within
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {within:.0f} s")
        time.sleep(0.02)
    return result


class Target(ThreadingHTTPServer):
    """A real HTTP server for the checks to probe.

    /ok answers 200, /busy 429, /broken 500, /slow 200 after 3 s, and
    /switch whatever ``switch_status`` says (503 at first).
    """

    daemon_threads = True
    switch_status = 503

    @property
    def url(self) -> str:
        """Its base URL."""
        return f"http://127.0.0.1:{self.server_address[1]}"


class _TargetHandler(BaseHTTPRequestHandler):
    server: Target
    statuses = {"/ok": 200, "/busy": 429, "/broken": 500, "/slow": 200}

    def do_GET(self) -> None:
        if self.path == "/slow":
            time.sleep(3)
        status = self.statuses.get(self.path, 404)
        if self.path == "/switch":
            status = self.server.switch_status
        body = f"answer {status}".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def target() -> Iterator[Target]:
    """A running :class:`Target`."""
    server = Target(("127.0.0.1", 0), _TargetHandler)
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def http_check(url: str, **extra: str) -> dict[str, str]:
    """A Check object probing ``url`` every second."""
    return {"HTTP": url, "Interval": "1s", **extra}


# --- Go durations ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "nanoseconds"),
    [
        ("10s", 10_000_000_000),
        ("1m", 60_000_000_000),
        ("1m30s", 90_000_000_000),
        ("500ms", 500_000_000),
        ("2h", 7_200_000_000_000),
        ("1.5s", 1_500_000_000),
        ("0", 0),
        ("-1s", -1_000_000_000),
    ],
)
def test_go_durations_are_read_as_go_reads_them(text: str, nanoseconds: int) -> None:
    assert parse_go_duration(text) == nanoseconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'time: invalid duration ""'),
        ("10", 'time: missing unit in duration "10"'),
        ("10x", 'time: unknown unit "x" in duration "10x"'),
        ("ten seconds", 'time: invalid duration "ten seconds"'),
    ],
)
def test_invalid_go_durations_fail_with_gos_message(text: str, message: str) -> None:
    with pytest.raises(GoSyntaxError) as raised:
        parse_go_duration(text)
    assert str(raised.value) == message


def test_durations_are_written_as_go_writes_them() -> None:
    shown = [format_go_duration(parse_go_duration(t)) for t in ("10s", "90s", "2h", "500ms")]
    assert shown == ["10s", "1m30s", "2h0m0s", "500ms"]


# --- register and deregister --------------------------------------------------------


def test_a_registered_service_is_listed_as_the_agent_lists_it(
    consul_double: ConsulDouble,
) -> None:
    body = {
        "ID": "product-10.0.0.5-8002",
        "Name": "product",
        "Address": "10.0.0.5",
        "Port": 8002,
        "Tags": ["v0.1.0", "test"],
        "Meta": {"version": "0.1.0"},
        "EnableTagOverride": False,
    }

    response = register(consul_double, body)

    assert (response.status_code, response.text) == (200, "")
    listed = httpx.get(f"{consul_double.url}/v1/agent/services")
    assert listed.json() == {
        "product-10.0.0.5-8002": {
            "ID": "product-10.0.0.5-8002",
            "Service": "product",
            "Tags": ["v0.1.0", "test"],
            "Meta": {"version": "0.1.0"},
            "Port": 8002,
            "Address": "10.0.0.5",
            "TaggedAddresses": {
                "lan_ipv4": {"Address": "10.0.0.5", "Port": 8002},
                "wan_ipv4": {"Address": "10.0.0.5", "Port": 8002},
            },
            "Weights": {"Passing": 1, "Warning": 1},
            "EnableTagOverride": False,
            "Datacenter": "dc1",
        }
    }
    assert consul_double.services() == listed.json()
    assert consul_double.received_registrations == [body]


def test_lowercase_and_snake_case_keys_are_accepted_and_the_id_defaults_to_the_name(
    consul_double: ConsulDouble,
) -> None:
    body = {
        "name": "user",
        "port": 8001,
        "tags": ["v1"],
        "checks": [
            {
                "http": "http://127.0.0.1:1/readyz",
                "interval": "10s",
                "deregister_critical_service_after": "1m30s",
            }
        ],
    }

    assert register(consul_double, body).status_code == 200

    assert consul_double.services()["user"]["Port"] == 8001
    check = consul_double.checks()["service:user"]
    assert (check["ServiceID"], check["Interval"], check["Type"]) == ("user", "10s", "http")
    assert consul_double.deregister_critical_after("user") == 90.0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param([{"Name": "web"}], "cannot unmarshal array into Go value", id="array"),
        pytest.param("web", "cannot unmarshal string into Go value", id="string"),
        pytest.param({"ID": "web-1", "Port": 80}, "Missing service name", id="no-name"),
        pytest.param(
            {"Name": "web", "Port": "8080"},
            "cannot unmarshal string into Go struct field ServiceDefinition.Port of type int",
            id="quoted-port",
        ),
        pytest.param(
            {"Name": "web", "Check": http_check("http://h/", Interval="ten seconds")},
            'Request decode failed: time: invalid duration "ten seconds"',
            id="bad-duration",
        ),
        pytest.param(
            {"Name": "web", "Check": {"HTTP": "http://h/", "Timeout": "5"}},
            'time: missing unit in duration "5"',
            id="duration-without-unit",
        ),
        pytest.param(
            {"Name": "web", "Check": {"HTTP": "http://h/"}},
            "Interval must be > 0",
            id="no-interval",
        ),
        pytest.param(
            {"Name": "web", "Check": http_check("http://h/", Status="ok")},
            "Status for checks must 'passing', 'warning', 'critical'",
            id="bad-status",
        ),
        pytest.param({"Name": "web", "Address": "::"}, "Invalid service address", id="any"),
        pytest.param(
            {"Name": "web", "Check": {"Args": ["true"], "Interval": "1s"}},
            "does not run script checks",
            id="script-check",
        ),
    ],
)
def test_a_bad_registration_is_refused_with_400_and_consuls_message(
    consul_double: ConsulDouble, body: Any, message: str
) -> None:
    response = register(consul_double, body)

    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("text/plain")
    assert message in response.text
    assert consul_double.services() == {}


def test_a_body_that_is_not_json_is_refused(consul_double: ConsulDouble) -> None:
    response = httpx.put(f"{consul_double.url}/v1/agent/service/register", content=b"{nope")

    assert response.status_code == 400
    assert response.text.startswith("Request decode failed:")


def test_a_url_as_address_is_accepted_like_consul_does_and_recorded(
    consul_double: ConsulDouble,
) -> None:
    body = {"Name": "web", "Address": "http://10.0.0.1:8000", "Port": 8000}

    assert register(consul_double, body).status_code == 200

    assert consul_double.services()["web"]["Address"] == "http://10.0.0.1:8000"
    assert ["://" in str(b.get("Address")) for b in consul_double.received_registrations] == [True]


def test_registering_the_same_id_again_replaces_it_and_may_replace_its_checks(
    consul_double: ConsulDouble,
) -> None:
    two_checks = [{"CheckID": "a", "TTL": "30s"}, {"CheckID": "b", "TTL": "30s"}]
    register(consul_double, {"ID": "web-1", "Name": "web", "Port": 80, "Checks": two_checks})

    register(consul_double, {"ID": "web-1", "Name": "web", "Port": 81, "Check": two_checks[0]})
    assert consul_double.services()["web-1"]["Port"] == 81
    assert sorted(consul_double.checks()) == ["a", "b"]  # Consul keeps the others by default

    again = {"ID": "web-1", "Name": "web", "Port": 81, "Check": two_checks[0]}
    register(consul_double, again, **{"replace-existing-checks": "true"})
    assert sorted(consul_double.checks()) == ["a"]


def test_an_identical_registration_changes_no_index(consul_double: ConsulDouble) -> None:
    body = {"ID": "web-1", "Name": "web", "Port": 80, "Check": {"TTL": "30s"}}
    register(consul_double, body)
    before = index_of(httpx.get(f"{consul_double.url}/v1/health/service/web"))

    register(consul_double, body)

    assert index_of(httpx.get(f"{consul_double.url}/v1/health/service/web")) == before


def test_checks_get_consuls_ids_and_start_critical_unless_told(
    consul_double: ConsulDouble,
) -> None:
    checks = [{"TTL": "30s"}, {"TTL": "30s", "Status": "passing", "Name": "ready"}]

    register(consul_double, {"Name": "multi", "Checks": checks})

    listed = httpx.get(f"{consul_double.url}/v1/agent/checks").json()
    assert {cid: (c["Name"], c["Status"], c["ServiceID"]) for cid, c in listed.items()} == {
        "service:multi:1": ("Service 'multi' check", "critical", "multi"),
        "service:multi:2": ("ready", "passing", "multi"),
    }
    assert consul_double.check_status("multi") == "critical"
    assert consul_double.check_status("nobody") is None


def test_deregister_removes_the_service_and_its_checks(consul_double: ConsulDouble) -> None:
    register(consul_double, {"ID": "web-1", "Name": "web", "Check": {"TTL": "30s"}})

    response = httpx.put(f"{consul_double.url}/v1/agent/service/deregister/web-1")

    assert response.status_code == 200
    assert consul_double.services() == {}
    assert consul_double.checks() == {}
    assert consul_double.deregistered == ["web-1"]


def test_deregistering_an_unknown_id_is_404(consul_double: ConsulDouble) -> None:
    response = httpx.put(f"{consul_double.url}/v1/agent/service/deregister/nope")

    assert response.status_code == 404
    assert response.text.startswith('Unknown service ID "nope".')
    assert consul_double.deregistered == []


# --- checks and health ----------------------------------------------------------------


def test_http_checks_report_what_the_endpoint_really_answers(
    consul_double: ConsulDouble, target: Target
) -> None:
    base = target.url
    closed = f"http://127.0.0.1:{free_port()}/health"
    checks = {
        "ok": http_check(f"{base}/ok"),
        "busy": http_check(f"{base}/busy"),
        "broken": http_check(f"{base}/broken"),
        "closed": http_check(closed),
        "slow": http_check(f"{base}/slow", Timeout="1s"),
    }
    for name, check in checks.items():
        tags = ["primary"] if name == "ok" else []
        body = {"ID": name, "Name": "target", "Port": 80, "Tags": tags, "Check": check}
        assert register(consul_double, body).status_code == 200

    outputs = wait_until(
        lambda: (
            (found := consul_double.checks())
            and all(check["Output"] for check in found.values())
            and {name: check["Output"] for name, check in found.items()}
        ),
        what="a result of every check",
    )

    statuses = {name: consul_double.check_status(name) for name in checks}
    assert statuses == {
        "ok": "passing",
        "busy": "warning",
        "broken": "critical",
        "closed": "critical",
        "slow": "critical",
    }
    assert outputs["service:ok"] == f"HTTP GET {base}/ok: 200 OK Output: answer 200"
    assert "429 Too Many Requests" in outputs["service:busy"]
    assert "connect: connection refused" in outputs["service:closed"]
    assert "context deadline exceeded" in outputs["service:slow"]

    health = f"{consul_double.url}/v1/health/service/target"
    everyone = httpx.get(health).json()
    assert [entry["Service"]["ID"] for entry in everyone] == [
        "broken",
        "busy",
        "closed",
        "ok",
        "slow",
    ]
    passing = httpx.get(health, params={"passing": ""}).json()
    assert [entry["Service"]["ID"] for entry in passing] == ["ok"]
    assert [check["CheckID"] for check in passing[0]["Checks"]] == ["serfHealth", "service:ok"]
    assert passing[0]["Node"]["Address"] == "127.0.0.1"
    assert passing[0]["Service"]["Port"] == 80
    tagged = httpx.get(health, params={"tag": "PRIMARY"}).json()
    assert [entry["Service"]["ID"] for entry in tagged] == ["ok"]


def test_health_of_an_unknown_service_is_an_empty_list(consul_double: ConsulDouble) -> None:
    response = httpx.get(f"{consul_double.url}/v1/health/service/nobody", params={"passing": "1"})

    assert response.status_code == 200
    assert response.json() == []
    assert index_of(response) >= 1


def test_ttl_checks_expire_and_take_their_status_from_the_agent_api(
    consul_double: ConsulDouble,
) -> None:
    check = {"CheckID": "ttl", "TTL": "1s", "Status": "passing"}
    register(consul_double, {"ID": "worker", "Name": "worker", "Check": check})
    base = f"{consul_double.url}/v1/agent/check"

    wait_until(lambda: consul_double.check_status("worker") == "critical", what="the TTL expiry")
    assert consul_double.checks()["ttl"]["Output"] == "TTL expired"

    assert httpx.put(f"{base}/pass/ttl", params={"note": "fine"}).status_code == 200
    assert (consul_double.check_status("worker"), consul_double.checks()["ttl"]["Output"]) == (
        "passing",
        "fine",
    )
    update = {"Status": "warning", "Output": "slow disk"}
    assert httpx.put(f"{base}/update/ttl", json=update).status_code == 200
    assert consul_double.check_status("worker") == "warning"
    assert httpx.put(f"{base}/fail/nope").status_code == 404


def test_a_service_critical_for_longer_than_its_limit_is_deregistered(
    consul_double: ConsulDouble,
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/health"
    check = {"HTTP": closed, "Interval": "10s", "DeregisterCriticalServiceAfter": "1m"}
    register(consul_double, {"ID": "gone", "Name": "gone", "Check": check})
    healthy = {"CheckID": "alive", "TTL": "1h", "Status": "passing"}
    healthy["DeregisterCriticalServiceAfter"] = "1m"
    register(consul_double, {"ID": "stays", "Name": "stays", "Check": healthy})

    consul_double.advance(59)
    assert sorted(consul_double.services()) == ["gone", "stays"]

    consul_double.advance(2)
    assert sorted(consul_double.services()) == ["stays"]
    assert consul_double.reaped == ["gone"]
    assert consul_double.deregistered == []
    assert httpx.get(f"{consul_double.url}/v1/health/service/gone").json() == []


def test_a_deregister_limit_under_a_minute_counts_as_a_minute_and_is_recorded(
    consul_double: ConsulDouble,
) -> None:
    check = {"TTL": "1h", "DeregisterCriticalServiceAfter": "10s"}
    register(consul_double, {"ID": "hasty", "Name": "hasty", "Check": check})

    assert consul_double.deregister_critical_after("hasty") == 10.0
    consul_double.advance(30)
    assert "hasty" in consul_double.services()
    consul_double.advance(31)
    assert "hasty" not in consul_double.services()


# --- indexes and blocking queries ---------------------------------------------------


READS = (
    "/v1/agent/services",
    "/v1/agent/checks",
    "/v1/health/service/web",
    "/v1/catalog/services",
    "/v1/kv/?recurse",
    "/v1/kv/missing",
    "/v1/kv/?keys",
)


def test_every_read_carries_a_positive_index_that_grows_with_changes(
    consul_double: ConsulDouble,
) -> None:
    def indexes() -> dict[str, int]:
        answers = {path: httpx.get(consul_double.url + path) for path in READS}
        for answer in answers.values():
            assert answer.headers["X-Consul-KnownLeader"] == "true"
            assert answer.headers["X-Consul-LastContact"] == "0"
        return {path: index_of(answer) for path, answer in answers.items()}

    before = indexes()
    register(consul_double, {"ID": "web-1", "Name": "web", "Check": {"TTL": "30s"}})
    consul_double.kv_put("config/web", "on")
    after = indexes()

    assert all(index >= 1 for index in before.values())
    assert {path: after[path] > before[path] for path in READS} == dict.fromkeys(READS, True)


async def test_a_blocking_health_query_returns_the_new_instance_when_it_registers(
    consul_double: ConsulDouble,
) -> None:
    async with httpx.AsyncClient(base_url=consul_double.url, timeout=60) as http:
        first = await http.get("/v1/health/service/web")
        index = index_of(first)
        params = {"index": str(index), "wait": "30s"}
        blocked = asyncio.create_task(http.get("/v1/health/service/web", params=params))

        await eventually(
            lambda: asyncio.sleep(
                0, any(f"index={index}" in p for _, p in consul_double.requests())
            )
        )
        await asyncio.sleep(0.2)
        assert not blocked.done()

        await http.put("/v1/agent/service/register", json={"ID": "web-1", "Name": "web"})
        answer = await asyncio.wait_for(blocked, timeout=15)

    assert [entry["Service"]["ID"] for entry in answer.json()] == ["web-1"]
    assert index_of(answer) > index


async def test_a_blocking_passing_query_wakes_when_a_check_starts_passing(
    consul_double: ConsulDouble, target: Target
) -> None:
    async with httpx.AsyncClient(base_url=consul_double.url, timeout=60) as http:
        body = {"ID": "web-1", "Name": "web", "Check": http_check(f"{target.url}/switch")}
        await http.put("/v1/agent/service/register", json=body)
        first = await http.get("/v1/health/service/web", params={"passing": "true"})
        assert first.json() == []
        params = {"passing": "true", "index": str(index_of(first)), "wait": "30s"}
        blocked = asyncio.create_task(http.get("/v1/health/service/web", params=params))

        target.switch_status = 200
        answer = await asyncio.wait_for(blocked, timeout=15)

    assert [entry["Service"]["ID"] for entry in answer.json()] == ["web-1"]
    assert index_of(answer) > index_of(first)


def test_a_blocking_query_without_changes_returns_after_wait(consul_double: ConsulDouble) -> None:
    first = httpx.get(f"{consul_double.url}/v1/catalog/services")
    started = time.monotonic()

    answer = httpx.get(
        f"{consul_double.url}/v1/catalog/services",
        params={"index": str(index_of(first)), "wait": "1s"},
        timeout=30,
    )

    assert time.monotonic() - started >= 0.95
    assert answer.status_code == 200
    assert (answer.json(), index_of(answer)) == (first.json(), index_of(first))


async def test_a_blocking_kv_read_returns_the_value_put_from_python(
    consul_double: ConsulDouble,
) -> None:
    index = consul_double.kv_put("config/product/flag", "off")
    async with httpx.AsyncClient(base_url=consul_double.url, timeout=60) as http:
        params = {"index": str(index), "wait": "30s"}
        blocked = asyncio.create_task(http.get("/v1/kv/config/product/flag", params=params))
        await eventually(
            lambda: asyncio.sleep(
                0, any(f"index={index}" in p for _, p in consul_double.requests())
            )
        )
        assert not blocked.done()

        new_index = consul_double.kv_put("config/product/flag", "on")
        answer = await asyncio.wait_for(blocked, timeout=15)

    [entry] = answer.json()
    assert base64.b64decode(entry["Value"]) == b"on"
    assert index_of(answer) == entry["ModifyIndex"] == new_index > index


def test_bad_blocking_parameters_are_400(consul_double: ConsulDouble) -> None:
    url = f"{consul_double.url}/v1/catalog/services"

    assert httpx.get(url, params={"wait": "soon"}).text == "Invalid wait time"
    assert httpx.get(url, params={"index": "-1"}).text == "Invalid index"


def test_catalog_services_lists_every_name_with_its_tags(consul_double: ConsulDouble) -> None:
    register(consul_double, {"ID": "web-1", "Name": "web", "Tags": ["v1", "blue"]})
    register(consul_double, {"ID": "web-2", "Name": "web", "Tags": ["v1", "green"]})
    register(consul_double, {"ID": "db-1", "Name": "db"})

    response = httpx.get(f"{consul_double.url}/v1/catalog/services")

    assert response.json() == {"consul": [], "db": [], "web": ["blue", "green", "v1"]}


# --- KV ------------------------------------------------------------------------------


def test_kv_put_and_get_with_base64_values_flags_and_raw(consul_double: ConsulDouble) -> None:
    kv = f"{consul_double.url}/v1/kv"

    put = httpx.put(f"{kv}/config/user/greeting", content=b"hello", params={"flags": "42"})
    got = httpx.get(f"{kv}/config/user/greeting")
    raw = httpx.get(f"{kv}/config/user/greeting", params={"raw": ""})

    assert put.json() is True
    [entry] = got.json()
    assert entry == {
        "LockIndex": 0,
        "Key": "config/user/greeting",
        "Flags": 42,
        "Value": base64.b64encode(b"hello").decode(),
        "CreateIndex": entry["ModifyIndex"],
        "ModifyIndex": index_of(got),
    }
    assert (raw.content, raw.headers["Content-Type"]) == (b"hello", "text/plain")
    assert consul_double.kv_get("config/user/greeting") == b"hello"


def test_kv_missing_keys_are_404_with_an_index(consul_double: ConsulDouble) -> None:
    missing = httpx.get(f"{consul_double.url}/v1/kv/nothing/here")
    prefix = httpx.get(f"{consul_double.url}/v1/kv/nothing/", params={"recurse": ""})

    assert (missing.status_code, prefix.status_code) == (404, 404)
    assert index_of(missing) >= 1
    assert index_of(prefix) >= 1
    assert consul_double.kv_get("nothing/here") is None


def test_kv_recurse_and_keys_list_a_prefix(consul_double: ConsulDouble) -> None:
    for key in ("config/user/a", "config/user/b", "config/product/c", "other"):
        consul_double.kv_put(key, key.upper())
    kv = f"{consul_double.url}/v1/kv"

    listed = httpx.get(f"{kv}/config/", params={"recurse": ""}).json()
    keys = httpx.get(f"{kv}/config/", params={"keys": ""}).json()
    folders = httpx.get(f"{kv}/config/", params={"keys": "", "separator": "/"}).json()

    assert [(e["Key"], base64.b64decode(e["Value"])) for e in listed] == [
        ("config/product/c", b"CONFIG/PRODUCT/C"),
        ("config/user/a", b"CONFIG/USER/A"),
        ("config/user/b", b"CONFIG/USER/B"),
    ]
    assert keys == ["config/product/c", "config/user/a", "config/user/b"]
    assert folders == ["config/product/", "config/user/"]


def test_kv_check_and_set_follows_the_modify_index(consul_double: ConsulDouble) -> None:
    kv = f"{consul_double.url}/v1/kv/lock"

    assert httpx.put(kv, content=b"1", params={"cas": "0"}).json() is True
    assert httpx.put(kv, content=b"2", params={"cas": "0"}).json() is False
    modify = httpx.get(kv).json()[0]["ModifyIndex"]
    assert httpx.put(kv, content=b"3", params={"cas": str(modify)}).json() is True
    assert httpx.put(kv, content=b"4", params={"cas": str(modify)}).json() is False
    assert consul_double.kv_get("lock") == b"3"
    assert httpx.delete(kv, params={"cas": str(modify)}).json() is False
    current = httpx.get(kv).json()[0]["ModifyIndex"]
    assert httpx.delete(kv, params={"cas": str(current)}).json() is True
    assert consul_double.kv_get("lock") is None


def test_kv_delete_one_key_or_a_prefix(consul_double: ConsulDouble) -> None:
    for key in ("app/a", "app/b", "apple"):
        consul_double.kv_put(key, "x")
    kv = f"{consul_double.url}/v1/kv"

    assert httpx.delete(f"{kv}/app/a").json() is True
    assert httpx.delete(f"{kv}/app/", params={"recurse": ""}).json() is True

    assert httpx.get(f"{kv}/", params={"keys": ""}).json() == ["apple"]
    consul_double.kv_delete("apple")
    assert httpx.get(f"{kv}/", params={"keys": ""}).json() == []


def test_kv_empty_values_are_null_and_bad_requests_are_refused(
    consul_double: ConsulDouble,
) -> None:
    kv = f"{consul_double.url}/v1/kv"
    httpx.put(f"{kv}/empty", content=b"")

    assert httpx.get(f"{kv}/empty").json()[0]["Value"] is None
    assert consul_double.kv_get("empty") == b""
    assert httpx.get(f"{kv}/").text == "Missing key name"
    assert httpx.put(f"{kv}/x", params={"flags": "many"}).status_code == 500
    conflicting = httpx.delete(f"{kv}/x", params={"recurse": "", "cas": "1"})
    assert (conflicting.status_code, conflicting.text[:18]) == (400, "Conflicting flags:")


# --- the client MeshMart uses ---------------------------------------------------------


# py-consul passes aiohttp the deprecated ssl_context argument; not the double's doing.
@pytest.mark.filterwarnings("ignore:ssl_context is deprecated:DeprecationWarning")
async def test_py_consul_round_trips_through_the_double(consul_double: ConsulDouble) -> None:
    client = consul.aio.Consul(host=consul_double.host, port=consul_double.port)
    try:
        check = Check.http("http://127.0.0.1:1/readyz", "10s", timeout="1s", deregister="1m")
        registered = await client.agent.service.register(
            "user", service_id="user-1", address="10.0.0.7", port=8001, check=check
        )
        index, everyone = await client.health.service("user")
        _, passing = await client.health.service("user", passing=True)
        stored = await client.kv.put("config/user/limit", "10")
        _, entry = await client.kv.get("config/user/limit")
        gone = await client.agent.service.deregister("user-1")
        again = await client.agent.service.deregister("user-1")
    finally:
        await client.close()

    assert registered is True
    assert int(index) >= 1
    assert [(e["Service"]["ID"], e["Service"]["Address"]) for e in everyone] == [
        ("user-1", "10.0.0.7")
    ]
    assert passing == []  # a new check is critical until it passes
    assert (stored, entry["Value"]) == (True, b"10")
    assert (gone, again) == (True, False)  # py-consul reads the 404 as False
    assert consul_double.deregistered == ["user-1"]


# --- the server itself ---------------------------------------------------------------


def test_stop_refuses_connections_and_start_resumes_with_the_same_state_and_port(
    consul_double: ConsulDouble,
) -> None:
    register(consul_double, {"ID": "web-1", "Name": "web", "Port": 80})
    consul_double.kv_put("config/web", "on")
    port = consul_double.port
    before = index_of(httpx.get(f"{consul_double.url}/v1/agent/services"))

    consul_double.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{consul_double.url}/v1/agent/services")
    consul_double.start()

    answer = httpx.get(f"{consul_double.url}/v1/agent/services")
    assert consul_double.port == port
    assert list(answer.json()) == ["web-1"]
    assert index_of(answer) == before
    assert consul_double.kv_get("config/web") == b"on"


def test_unknown_endpoints_are_404_and_wrong_methods_405(consul_double: ConsulDouble) -> None:
    unknown = httpx.get(f"{consul_double.url}/v1/status/leader")
    wrong = httpx.get(f"{consul_double.url}/v1/agent/service/register")

    assert unknown.status_code == 404
    assert (wrong.status_code, wrong.headers["Allow"]) == (405, "PUT")


def test_unsupported_query_features_fail_loudly(consul_double: ConsulDouble) -> None:
    health = f"{consul_double.url}/v1/health/service/web"

    assert httpx.get(health, params={"filter": 'Service.Meta.v == "1"'}).status_code == 400
    assert httpx.get(health, params={"dc": "dc2"}).text == "No path to datacenter"
    assert httpx.get(health, params={"passing": "maybe"}).text == "Invalid value for ?passing"


def test_every_request_is_recorded_with_its_method_and_query(consul_double: ConsulDouble) -> None:
    httpx.get(f"{consul_double.url}/v1/health/service/web", params={"passing": "1"})
    httpx.put(f"{consul_double.url}/v1/kv/a", content=b"1")

    assert consul_double.requests() == [
        ("GET", "/v1/health/service/web?passing=1"),
        ("PUT", "/v1/kv/a"),
    ]


def test_a_double_on_a_given_port_serves_there_until_closed() -> None:
    port = free_port()
    with ConsulDouble(port) as double:
        assert double.url == f"http://127.0.0.1:{port}"
        assert httpx.get(f"{double.url}/v1/agent/services").json() == {}
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/v1/agent/services")
    with pytest.raises(RuntimeError):
        double.start()
