"""The compose gateway's nginx configuration with a real nginx (Debian's package).

``nginx -t`` accepts it, and nginx running it routes every public path of
every service's OpenAPI document to that service, passes the request id and
the client's address on, serves the start page and each service's Swagger UI,
and answers its own errors (no route, too large, service down) as problem
documents. The services here are stand-ins that say who they are; the e2e
test (test_gateway_e2e.py) puts the real services behind it.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html

from meshmart_common.testing import free_port
from tests.deploy.compose_file import SERVICES
from tests.deploy.gateway_nginx import GATEWAY_DIR, Gateway, check, render, running_gateway

PLATFORM_PATHS = {"/healthz", "/readyz", "/metrics"}
REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")  # nginx's $request_id


class _StandIn(http.server.BaseHTTPRequestHandler):
    """Answers every request with its service's name, the path and the headers it got;
    /docs and /redoc with FastAPI's real Swagger UI and ReDoc pages."""

    service = ""

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        if self.path == "/docs":
            body = get_swagger_ui_html(
                openapi_url="/openapi.json",
                title="docs",
                oauth2_redirect_url="/docs/oauth2-redirect",  # FastAPI's default
            ).body
            kind = "text/html; charset=utf-8"
        elif self.path == "/redoc":
            body = get_redoc_html(openapi_url="/openapi.json", title="redoc").body
            kind = "text/html; charset=utf-8"
        else:
            answer = {
                "service": self.service,
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
            }
            body, kind = json.dumps(answer).encode(), "application/json"
        self.send_response(200)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        # A service echoes the request id; the gateway must not send two.
        self.send_header("x-request-id", self.headers.get("x-request-id", "none"))
        self.end_headers()
        self.wfile.write(bytes(body))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def stand_ins() -> Iterator[dict[str, int]]:
    """One stand-in HTTP server per service: {service: port}."""
    servers = []
    for service in SERVICES:
        handler = type(f"{service}_stand_in", (_StandIn,), {"service": service})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    try:
        yield {
            s: int(server.server_address[1]) for s, server in zip(SERVICES, servers, strict=True)
        }
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def gateway(stand_ins: dict[str, int]) -> Iterator[Gateway]:
    upstreams = {service: f"127.0.0.1:{port}" for service, port in stand_ins.items()}
    with running_gateway(free_port(), upstreams) as running:
        yield running


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        yield client


def public_paths() -> dict[str, set[str]]:
    """{service: the paths of its OpenAPI document}, from the services' own apps."""
    import importlib

    paths: dict[str, set[str]] = {}
    for service in SERVICES:
        main = importlib.import_module(f"{service}_service.main")
        paths[service] = set(main.app_factory().openapi()["paths"])
    return paths


# --- the configuration ---------------------------------------------------------------


def test_nginx_accepts_the_gateway_configuration(tmp_path: Path) -> None:
    upstreams = {service: f"127.0.0.1:{8001 + n}" for n, service in enumerate(SERVICES)}
    config = render(tmp_path, free_port(), upstreams)
    checked = check(config)
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr
    assert "[warn]" not in checked.stderr, checked.stderr


def test_the_tests_change_only_addresses_and_paths(tmp_path: Path) -> None:
    upstreams = {service: f"127.0.0.1:{8001 + n}" for n, service in enumerate(SERVICES)}
    render(tmp_path, 18080, upstreams)
    changed: list[str] = []
    for original in GATEWAY_DIR.rglob("*"):
        if original.is_file():
            rendered = tmp_path / original.relative_to(GATEWAY_DIR)
            before, after = original.read_text().splitlines(), rendered.read_text().splitlines()
            assert len(before) == len(after), original
            changed += [new for old, new in zip(before, after, strict=True) if old != new]
    allowed = re.compile(
        rf"^\s*(listen 127\.0\.0\.1:18080;|(user|product|order|trade|data)\s+127\.0\.0\.1:800\d;"
        rf"|.*{re.escape(str(tmp_path / 'tmp'))}/.*)$"
    )
    assert changed, "nothing was rendered"
    assert [line for line in changed if not allowed.match(line)] == []
    assert sum("listen" in line for line in changed) == 1
    assert sum("127.0.0.1:800" in line for line in changed) == len(SERVICES)


def test_limits_and_timeouts_are_set() -> None:
    config = (GATEWAY_DIR / "meshmart" / "gateway.conf").read_text()
    for directive in (
        "client_max_body_size 1m;",
        "proxy_connect_timeout 3s;",
        "proxy_read_timeout 30s;",
        "client_body_timeout 15s;",
        "access_log /dev/stdout meshmart_json;",
    ):
        assert directive in config


# --- routing ---------------------------------------------------------------------------


def test_every_public_path_of_every_service_reaches_that_service(client: httpx.Client) -> None:
    routed = 0
    for service, paths in public_paths().items():
        for template in sorted(paths - PLATFORM_PATHS):
            path = re.sub(r"\{[^}]+\}", "1", template)
            if path.startswith("/api/v1/admin/"):
                # Every service has these: reached through the service's own prefix.
                path = f"/services/{service}{path}"
            answer = client.get(path, params={"q": "x"})
            assert answer.status_code == 200, (service, path, answer.text)
            body = answer.json()
            assert body["service"] == service, (path, body["service"])
            assert body["path"] == f"{path.removeprefix(f'/services/{service}')}?q=x"
            routed += 1
    assert routed > 40


@pytest.mark.parametrize(
    ("path", "service"),
    [
        ("/api/v1/auth/login", "user"),
        ("/api/v1/users", "user"),
        ("/.well-known/jwks.json", "user"),
        ("/api/v1/categories", "product"),
        ("/api/v1/cart/items/7", "order"),
        ("/api/v1/coupon-campaigns", "trade"),
        ("/api/v1/quotes", "trade"),
        ("/api/v1/audit/events", "data"),
        ("/api/v1/reports/daily", "data"),
        ("/services/order/readyz", "order"),
        ("/services/data/metrics", "data"),
    ],
)
def test_routes(client: httpx.Client, path: str, service: str) -> None:
    answer = client.post(path, json={"a": 1})
    assert answer.status_code == 200, answer.text
    assert (answer.json()["service"], answer.json()["method"]) == (service, "POST")


@pytest.mark.parametrize(
    "path", ["/api/v1/productsx", "/api/v1/admin/config", "/api/v2/products", "/services/x/docs"]
)
def test_a_path_no_service_owns_is_a_problem_document(client: httpx.Client, path: str) -> None:
    answer = client.get(path)
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["status"] == 404
    assert problem["title"] == "Not Found"
    assert problem["request_id"] == answer.headers["x-request-id"]


# --- what the services receive ------------------------------------------------------------


def test_a_sane_request_id_passes_through_and_comes_back_once(
    client: httpx.Client, gateway: Gateway
) -> None:
    answer = client.get("/api/v1/products", headers={"X-Request-ID": "checkout-42.a:b"})
    assert answer.json()["headers"]["x-request-id"] == "checkout-42.a:b"
    assert answer.headers.get_list("x-request-id") == ["checkout-42.a:b"]
    entry = gateway.entry("checkout-42.a:b")
    assert entry["service"] == "product"
    assert entry["status"] == 200
    assert entry["upstream_addr"].startswith("127.0.0.1:")


@pytest.mark.parametrize("sent", [None, "", "has spaces", "x" * 129, "semi;colon"])
def test_a_missing_or_unusable_request_id_is_replaced(
    client: httpx.Client, sent: str | None
) -> None:
    headers = {} if sent is None else {"X-Request-ID": sent}
    answer = client.get("/api/v1/orders", headers=headers)
    forwarded = answer.json()["headers"]["x-request-id"]
    assert REQUEST_ID.match(forwarded), forwarded
    assert answer.headers.get_list("x-request-id") == [forwarded]


def test_the_client_address_is_appended_to_x_forwarded_for(client: httpx.Client) -> None:
    plain = client.get("/api/v1/points").json()["headers"]
    assert plain["x-forwarded-for"] == "127.0.0.1"
    assert plain["x-forwarded-proto"] == "http"
    spoofed = client.get("/api/v1/points", headers={"X-Forwarded-For": "203.0.113.9"})
    # The services trust the gateway, and so take the last address: the real peer.
    assert spoofed.json()["headers"]["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"


def test_a_body_over_the_limit_is_refused_by_the_gateway(client: httpx.Client) -> None:
    answer = client.post("/api/v1/products", content=b"x" * (1024 * 1024 + 1))
    assert answer.status_code == 413
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["status"] == 413
    assert client.post("/api/v1/products", content=b"x" * 1000).status_code == 200


def test_a_service_that_is_down_is_a_502_problem(stand_ins: dict[str, int]) -> None:
    upstreams = {service: f"127.0.0.1:{port}" for service, port in stand_ins.items()}
    upstreams["trade"] = f"127.0.0.1:{free_port()}"  # nothing listens there
    with running_gateway(free_port(), upstreams) as gateway:
        answer = httpx.get(f"{gateway.url}/api/v1/points", timeout=10)
        assert answer.status_code == 502
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["request_id"] == answer.headers["x-request-id"]
        assert httpx.get(f"{gateway.url}/api/v1/orders", timeout=10).status_code == 200


# --- pages -----------------------------------------------------------------------------------


def test_the_start_page_links_every_ui(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    links = set(re.findall(r'href="([^"]+)"', page.text))
    assert {f"/services/{service}/docs" for service in SERVICES} <= links
    for port, path in (("16686", "/search"), ("9090", "/targets"), ("8500", "/ui/")):
        assert f"http://localhost:{port}{path}" in links
        assert f'data-port="{port}" data-path="{path}"' in page.text


@pytest.mark.parametrize("service", SERVICES)
def test_each_services_swagger_ui_and_redoc_load_through_the_gateway(
    client: httpx.Client, service: str
) -> None:
    docs = client.get(f"/services/{service}/docs")
    assert docs.status_code == 200
    assert f"url: '/services/{service}/openapi.json'" in docs.text
    assert f"'/services/{service}/docs/oauth2-redirect'" in docs.text
    assert "'/openapi.json'" not in docs.text
    redoc = client.get(f"/services/{service}/redoc")
    assert f'spec-url="/services/{service}/openapi.json"' in redoc.text
    schema: dict[str, Any] = client.get(f"/services/{service}/openapi.json").json()
    assert schema["service"] == service
    assert schema["path"] == "/openapi.json"


def test_the_access_log_is_one_json_object_per_request(
    client: httpx.Client, gateway: Gateway
) -> None:
    client.get("/api/v1/stats/overview", headers={"X-Request-ID": "log-check-1"})
    entry = gateway.entry("log-check-1")
    assert entry["method"] == "GET"
    assert entry["uri"] == "/api/v1/stats/overview"
    assert entry["service"] == "data"
    assert isinstance(entry["request_time"], float | int)
    assert all(isinstance(e, dict) for e in gateway.log_entries())
