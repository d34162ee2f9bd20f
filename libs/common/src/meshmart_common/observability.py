"""Request context and Prometheus metrics: one pure-ASGI middleware.

Every request gets a request id (the caller's X-Request-ID when it is sane, a
fresh one otherwise), echoed in the response. Request count and latency are
labelled by method, route *template* and status, so label sets stay bounded.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
UNMATCHED_ROUTE = "<unmatched>"
OTHER_METHOD = "OTHER"
# Clients may send any method token; only these get a label of their own.
_KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class HttpMetrics:
    """The RED metrics of one app, in its own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests by method, route template and status code.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )


RouteTemplates = dict[int, list[tuple[Any, str]]]


def _app_route_templates(app: Any) -> RouteTemplates:
    """Map each route object of ``app`` to its app-level (regex, template) pairs.

    Newer FastAPI keeps included routes as the router's own objects, whose
    ``path`` lacks the prefixes given to ``include_router`` (``/api/v1`` and
    any nesting); its public ``iter_route_contexts`` knows the full templates.
    Older FastAPI copies routes with their full path, so no table is needed.
    """
    try:
        from fastapi.routing import iter_route_contexts  # type: ignore[attr-defined,unused-ignore]
    except ImportError:  # pragma: no cover - older FastAPI
        return {}
    table: RouteTemplates = {}
    for context in iter_route_contexts(getattr(app, "routes", [])):
        template = context.path
        if isinstance(template, str):
            regex = getattr(context, "path_regex", None)
            table.setdefault(id(context.original_route), []).append((regex, template))
    return table


def _route_template(scope: Scope, templates: RouteTemplates) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return UNMATCHED_ROUTE
    candidates = templates.get(id(route))
    if not candidates:
        return path
    if len(candidates) > 1:  # one router included under several prefixes
        route_path = scope.get("path", "")
        root_path = scope.get("root_path", "")
        if root_path and route_path.startswith(root_path):
            route_path = route_path[len(root_path) :]
        for regex, template in candidates:
            if regex is not None and regex.match(route_path):
                return template
    return candidates[0][1]


class RequestContextMiddleware:
    """Assigns the request id and records metrics for every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self._templates: RouteTemplates | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                # fullmatch: "$" would also accept a trailing newline.
                if _REQUEST_ID.fullmatch(candidate):
                    request_id = candidate
                break
        if request_id is None:
            request_id = uuid.uuid4().hex
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        status_holder = [500]
        header_value = request_id.encode("latin-1")

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                headers = list(message.get("headers", ()))
                headers.append((b"x-request-id", header_value))
                message["headers"] = headers
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            method = scope.get("method", "GET")
            if method not in _KNOWN_METHODS:
                method = OTHER_METHOD
            if self._templates is None and "app" in scope:
                # Built on the first request, once every router is included.
                self._templates = _app_route_templates(scope["app"])
            route = _route_template(scope, self._templates or {})
            self.metrics.requests.labels(method, route, str(status_holder[0])).inc()
            self.metrics.latency.labels(method, route).observe(elapsed)


def configure_logging(level: str, service: str) -> None:
    """Human-readable log lines naming the service (JSON logs come with tracing)."""
    root = logging.getLogger()
    numeric = logging.getLevelName(level.upper())
    root.setLevel(numeric if isinstance(numeric, int) else logging.INFO)
    fmt = f"%(asctime)s %(levelname)-5s {service} %(name)s: %(message)s"
    if not any(getattr(h, "_meshmart", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler._meshmart = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    for existing in root.handlers:
        if getattr(existing, "_meshmart", False):
            existing.setFormatter(logging.Formatter(fmt))
