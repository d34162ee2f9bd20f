"""Request context, access logs, structured logging and Prometheus HTTP metrics.

One pure-ASGI middleware per app (:class:`RequestContextMiddleware`):

- every request gets a request id (the caller's X-Request-ID when it is sane,
  a fresh one otherwise), echoed in the response and bound to a context
  variable, so every log line written while the request runs carries it;
- request count, latency and in-flight requests are labelled by method and
  route *template* (and status), so label sets stay bounded;
- one access log line per request (logger ``meshmart.access``): method, route
  template, status, latency in ms.

:func:`configure_logging` sends every logger (uvicorn's too) through one
handler: human-readable lines by default, one JSON object per line with
``LOG_FORMAT=json``. Both name the service and add the request id and, when a
span is active, the OpenTelemetry trace and span ids, so a log line leads to
its trace.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
UNMATCHED_ROUTE = "<unmatched>"
OTHER_METHOD = "OTHER"
# Clients may send any method token; only these get a label of their own.
_KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

ACCESS_LOGGER = "meshmart.access"
"""The logger of the access log lines (one per request)."""
# Probes and scrapes arrive every few seconds; their access lines are DEBUG so
# they do not drown the requests people make.
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})

LogFormat = Literal["console", "json"]

# --- request id and trace ids of the current context -----------------------------

_current_request_id: ContextVar[str | None] = ContextVar("meshmart_request_id", default=None)


def current_request_id() -> str | None:
    """The request id of the request (or event) being handled in this context, if any."""
    return _current_request_id.get()


def bind_request_id(request_id: str | None) -> None:
    """Make ``request_id`` the current one until the enclosing :func:`request_id_scope` ends."""
    _current_request_id.set(request_id)


@contextmanager
def request_id_scope(request_id: str | None = None) -> Iterator[None]:
    """Within the block, log lines carry ``request_id``; afterwards the previous id is back."""
    token = _current_request_id.set(request_id)
    try:
        yield
    finally:
        _current_request_id.reset(token)


def _trace_ids() -> tuple[str, str] | None:
    # Read from the OpenTelemetry API directly (not meshmart_common.tracing), so
    # logging works the same whether or how tracing is configured.
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)


# --- log formats ---------------------------------------------------------------

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",  # Python 3.12+
    "color_message",  # uvicorn's coloured copy of the message
}
_CONTEXT_KEYS = ("request_id", "trace_id", "span_id")


def _context_of(record: logging.LogRecord) -> dict[str, str]:
    """request_id, trace_id and span_id for ``record`` (those that are known)."""
    context: dict[str, str] = {}
    request_id = getattr(record, "request_id", None) or current_request_id()
    if request_id:
        context["request_id"] = str(request_id)
    trace_id = getattr(record, "trace_id", None)
    span_id = getattr(record, "span_id", None)
    if not trace_id:
        ids = _trace_ids()
        if ids is not None:
            trace_id, span_id = ids
    if trace_id:
        context["trace_id"] = str(trace_id)
        if span_id:
            context["span_id"] = str(span_id)
    return context


def _rfc3339(created: float) -> str:
    stamp = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: timestamp (RFC 3339, UTC), level, service, logger, message,
    request_id, trace_id and span_id when known, exception when there is one, and any
    ``extra`` fields of the call."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        entry: dict[str, Any] = {
            "timestamp": _rfc3339(record.created),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_context_of(record))
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and key not in _CONTEXT_KEYS and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class ConsoleLogFormatter(logging.Formatter):
    """``<time> <LEVEL> <service> <logger>: <message> request_id=... trace_id=...``."""

    def __init__(self, service: str) -> None:
        super().__init__(f"%(asctime)s %(levelname)-5s {service} %(name)s: %(message)s")
        self.service = service

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The line without the traceback (logging appends that)."""
        line = super().formatMessage(record)
        context = _context_of(record)
        context.pop("span_id", None)  # the trace id finds the trace; keep lines short
        if context:
            line += " " + " ".join(f"{key}={value}" for key, value in context.items())
        return line


def log_formatter(log_format: LogFormat, service: str) -> logging.Formatter:
    """The formatter of ``LOG_FORMAT``: ``console`` (default) or ``json``."""
    if log_format == "json":
        return JsonLogFormatter(service)
    return ConsoleLogFormatter(service)


# uvicorn configures these with handlers of its own before the app exists.
_SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.asgi")
# uvicorn writes its access line only while this logger has a handler; the
# middleware writes a richer one (route template, request and trace ids).
_SERVER_ACCESS_LOGGER = "uvicorn.access"


def configure_logging(level: str, service: str, log_format: LogFormat = "console") -> None:
    """Route every log line of the process through one stderr handler in ``log_format``.

    Idempotent: a second call (another app in the same process) replaces the
    formatter instead of adding a handler. uvicorn's loggers lose their own
    handlers and propagate to it, so server lines look like all the others;
    uvicorn's access log stays off (the middleware writes the access lines).
    """
    root = logging.getLogger()
    numeric = logging.getLevelName(level.upper())
    root.setLevel(numeric if isinstance(numeric, int) else logging.INFO)
    if not any(getattr(h, "_meshmart", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler._meshmart = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    formatter = log_formatter(log_format, service)
    for existing in root.handlers:
        if getattr(existing, "_meshmart", False):
            existing.setFormatter(formatter)
    for name in _SERVER_LOGGERS:
        server_logger = logging.getLogger(name)
        server_logger.handlers.clear()
        server_logger.propagate = True
    server_access = logging.getLogger(_SERVER_ACCESS_LOGGER)
    server_access.handlers.clear()
    server_access.propagate = False


# --- HTTP metrics and the middleware ------------------------------------------------


class HttpMetrics:
    """The RED metrics of one app, in its own registry.

    Rate and errors: ``http_requests_total{method,route,status}`` (errors are
    the 5xx, or 4xx, statuses); duration: ``http_request_duration_seconds``;
    saturation: ``http_requests_in_progress{method}``.
    """

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
        # The route is only known once routing is done, so in-flight requests
        # are counted by method alone.
        self.in_progress = Gauge(
            "http_requests_in_progress",
            "HTTP requests being served now, by method.",
            ["method"],
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
    """Assigns the request id, records metrics and writes the access log line of every
    HTTP request."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self._templates: RouteTemplates | None = None
        self._access = logging.getLogger(ACCESS_LOGGER)

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

        method = scope.get("method", "GET")
        if method not in _KNOWN_METHODS:
            method = OTHER_METHOD
        in_progress = self.metrics.in_progress.labels(method)
        in_progress.inc()
        started = time.perf_counter()
        with request_id_scope(request_id):
            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                elapsed = time.perf_counter() - started
                in_progress.dec()
                if self._templates is None and "app" in scope:
                    # Built on the first request, once every router is included.
                    self._templates = _app_route_templates(scope["app"])
                route = _route_template(scope, self._templates or {})
                status = status_holder[0]
                self.metrics.requests.labels(method, route, str(status)).inc()
                self.metrics.latency.labels(method, route).observe(elapsed)
                self._log_access(scope, method, route, status, elapsed)

    def _log_access(
        self, scope: Scope, method: str, route: str, status: int, elapsed: float
    ) -> None:
        level = logging.DEBUG if route in _QUIET_ROUTES else logging.INFO
        if not self._access.isEnabledFor(level):
            return
        duration_ms = round(elapsed * 1000, 2)
        self._access.log(
            level,
            "%s %s %d %.1f ms",
            method,
            route,
            status,
            duration_ms,
            # The raw path (never the query string: it may carry secrets) for
            # finding the very request; the route template for grouping.
            extra={
                "method": method,
                "route": route,
                "path": scope.get("path", ""),
                "status": status,
                "duration_ms": duration_ms,
            },
        )
