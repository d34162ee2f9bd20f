"""Logs: JSON or console lines naming the service, with request and trace ids; access logs."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from httpx import AsyncClient
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from meshmart_common.observability import (
    ACCESS_LOGGER,
    ConsoleLogFormatter,
    JsonLogFormatter,
    configure_logging,
    current_request_id,
    request_id_scope,
)
from meshmart_common.settings import ServiceSettings

RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
HEX_32 = re.compile(r"^[0-9a-f]{32}$")
HEX_16 = re.compile(r"^[0-9a-f]{16}$")
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")

tracer = TracerProvider().get_tracer("meshmart-tests")
"""A tracer of its own provider: spans are real (valid ids) without touching the global one."""


@contextmanager
def json_lines(
    service: str = "widgets", level: int = logging.INFO
) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """Capture the log lines of the process at ``level`` and above as parsed JSON objects
    while the block runs."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLogFormatter(service))
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)


def hex_ids(span: trace.Span) -> tuple[str, str]:
    context = span.get_span_context()
    return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the root logger and uvicorn's loggers back as they were after the test."""
    root = logging.getLogger()
    saved = (root.level, [(h, h.formatter) for h in root.handlers])
    server = {
        name: (
            list(logging.getLogger(name).handlers),
            logging.getLogger(name).propagate,
            logging.getLogger(name).level,
        )
        for name in SERVER_LOGGERS
    }
    yield
    root.setLevel(saved[0])
    for handler in list(root.handlers):
        if handler not in [h for h, _ in saved[1]]:
            root.removeHandler(handler)
    for handler, formatter in saved[1]:
        handler.setFormatter(formatter)
    for name, (handlers, propagate, level) in server.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.propagate = propagate
        logger.setLevel(level)


def make_record(message: str = "stock reserved for order %s", *args: object) -> logging.LogRecord:
    return logging.LogRecord("order.saga", logging.INFO, __file__, 1, message, args or (42,), None)


# --- the JSON format ---------------------------------------------------------------


def test_a_json_line_has_time_level_service_logger_and_message() -> None:
    record = make_record()
    record.created = datetime(2030, 5, 1, 12, 0, 0, 250_000, tzinfo=UTC).timestamp()

    line = JsonLogFormatter("order").format(record)

    assert "\n" not in line
    assert json.loads(line) == {
        "timestamp": "2030-05-01T12:00:00.250Z",
        "level": "INFO",
        "service": "order",
        "logger": "order.saga",
        "message": "stock reserved for order 42",
    }


def test_a_json_line_carries_the_request_id_and_the_active_span() -> None:
    with request_id_scope("req-7"), tracer.start_as_current_span("checkout") as span:
        entry = json.loads(JsonLogFormatter("order").format(make_record()))
    trace_id, span_id = hex_ids(span)
    assert (entry["request_id"], entry["trace_id"], entry["span_id"]) == (
        "req-7",
        trace_id,
        span_id,
    )
    assert HEX_32.match(entry["trace_id"])
    assert HEX_16.match(entry["span_id"])


def test_a_json_line_without_request_or_span_has_no_such_fields() -> None:
    entry = json.loads(JsonLogFormatter("order").format(make_record()))
    assert not {"request_id", "trace_id", "span_id"} & set(entry)


def test_a_json_line_holds_the_exception_and_extra_fields() -> None:
    logger = logging.getLogger("order.payments")
    with json_lines("order") as lines:
        try:
            raise ValueError("card declined")
        except ValueError:
            logger.exception("payment of order %s failed", 9, extra={"order_id": 9, "amount": 12})
    [entry] = [e for e in lines() if e["logger"] == "order.payments"]
    assert entry["level"] == "ERROR"
    assert entry["message"] == "payment of order 9 failed"
    assert entry["order_id"] == 9
    assert entry["amount"] == 12
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert entry["exception"].endswith("ValueError: card declined")
    assert RFC3339_UTC.match(entry["timestamp"])
    stamp = datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00"))
    assert abs(datetime.now(UTC) - stamp) < timedelta(seconds=60)


def test_an_explicit_request_id_wins_over_the_context() -> None:
    record = make_record()
    record.request_id = "from-extra"
    with request_id_scope("from-context"):
        entry = json.loads(JsonLogFormatter("order").format(record))
    assert entry["request_id"] == "from-extra"


def test_request_id_scopes_nest_and_restore() -> None:
    assert current_request_id() is None
    with request_id_scope("outer"):
        with request_id_scope("inner"):
            assert current_request_id() == "inner"
        assert current_request_id() == "outer"
    assert current_request_id() is None


# --- the console format and the setting ------------------------------------------------


def test_a_console_line_is_readable_and_ends_with_the_ids() -> None:
    with request_id_scope("req-7"), tracer.start_as_current_span("checkout") as span:
        line = ConsoleLogFormatter("order").format(make_record())
    trace_id, _ = hex_ids(span)
    assert re.fullmatch(
        r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} INFO  order order\.saga: "
        rf"stock reserved for order 42 request_id=req-7 trace_id={trace_id}",
        line,
    ), line


def test_a_console_line_outside_a_request_is_just_the_message() -> None:
    line = ConsoleLogFormatter("order").format(make_record())
    assert line.endswith(" INFO  order order.saga: stock reserved for order 42")


def test_console_is_the_default_log_format(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    assert ServiceSettings().log_format == "console"
    monkeypatch.setenv("LOG_FORMAT", "json")
    assert ServiceSettings().log_format == "json"
    monkeypatch.setenv("LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="log_format"):
        ServiceSettings()


def meshmart_handler() -> logging.Handler:
    [handler] = [h for h in logging.getLogger().handlers if getattr(h, "_meshmart", False)]
    return handler


@pytest.mark.usefixtures("restore_logging")
def test_the_app_logs_in_the_format_of_its_settings(make_app: Callable[..., FastAPI]) -> None:
    make_app(database_url="sqlite+aiosqlite://")
    assert isinstance(meshmart_handler().formatter, ConsoleLogFormatter)

    make_app(database_url="sqlite+aiosqlite://", log_format="json")
    formatter = meshmart_handler().formatter
    assert isinstance(formatter, JsonLogFormatter)
    assert formatter.service == "widgets"


@pytest.mark.usefixtures("restore_logging")
def test_uvicorn_lines_go_through_the_same_handler_and_its_access_log_stays_off() -> None:
    # uvicorn gives its loggers handlers of their own before the app is built.
    for name in SERVER_LOGGERS:
        logging.getLogger(name).addHandler(logging.StreamHandler(io.StringIO()))
        logging.getLogger(name).propagate = False
        logging.getLogger(name).setLevel(logging.INFO)

    configure_logging("INFO", "order", "json")

    for name in ("uvicorn", "uvicorn.error"):
        assert logging.getLogger(name).handlers == []
        assert logging.getLogger(name).propagate
    # uvicorn writes access lines only while its access logger has handlers: the
    # middleware's access line is the only one.
    assert not logging.getLogger("uvicorn.access").hasHandlers()
    assert len([h for h in logging.getLogger().handlers if getattr(h, "_meshmart", False)]) == 1
    stream = io.StringIO()
    handler = meshmart_handler()
    assert isinstance(handler, logging.StreamHandler)
    previous = handler.setStream(stream)
    try:
        logging.getLogger("uvicorn.error").info("Started server process [%d]", 1234)
    finally:
        handler.setStream(previous)
    entry = json.loads(stream.getvalue())
    assert (entry["service"], entry["logger"], entry["message"]) == (
        "order",
        "uvicorn.error",
        "Started server process [1234]",
    )


# --- lines written during a request, and the access log -----------------------------


def add_logging_route(app: FastAPI) -> None:
    probe = APIRouter()

    @probe.get("/api/v1/probe/{thing_id}")
    async def log_something(thing_id: int) -> dict[str, int]:
        """Write a log line while handling the request."""
        logging.getLogger("widgets.probe").info("looking at thing %s", thing_id)
        return {"id": thing_id}

    app.include_router(probe)


async def test_lines_written_during_a_request_carry_its_request_and_trace_ids(
    app: FastAPI, client: AsyncClient
) -> None:
    add_logging_route(app)
    with json_lines() as lines, tracer.start_as_current_span("client") as span:
        response = await client.get("/api/v1/probe/5", headers={"X-Request-ID": "req-abc"})
        other = await client.get("/api/v1/probe/6")
    assert response.status_code == 200

    trace_id, _ = hex_ids(span)
    handler_lines = [e for e in lines() if e["logger"] == "widgets.probe"]
    assert [(e["message"], e["request_id"], e["trace_id"]) for e in handler_lines] == [
        ("looking at thing 5", "req-abc", trace_id),
        ("looking at thing 6", other.headers["x-request-id"], trace_id),
    ]
    assert all(e["service"] == "widgets" for e in handler_lines)
    # Nothing leaks into the context after the request.
    assert current_request_id() is None


async def test_every_request_gets_one_access_line_with_the_route_template(
    client: AsyncClient,
) -> None:
    with json_lines() as lines:
        created = await client.post("/api/v1/widgets", json={"name": "sprocket"})
        widget_id = created.json()["id"]
        found = await client.get(f"/api/v1/widgets/{widget_id}")
        missing = await client.get("/api/v1/widgets/987654")

    access = [e for e in lines() if e["logger"] == ACCESS_LOGGER]
    assert [
        (e["level"], e["method"], e["route"], e["path"], e["status"], e["request_id"])
        for e in access
    ] == [
        (
            "INFO",
            "POST",
            "/api/v1/widgets",
            "/api/v1/widgets",
            201,
            created.headers["x-request-id"],
        ),
        (
            "INFO",
            "GET",
            "/api/v1/widgets/{widget_id}",
            f"/api/v1/widgets/{widget_id}",
            200,
            found.headers["x-request-id"],
        ),
        (
            "INFO",
            "GET",
            "/api/v1/widgets/{widget_id}",
            "/api/v1/widgets/987654",
            404,
            missing.headers["x-request-id"],
        ),
    ]
    for entry in access:
        assert entry["duration_ms"] >= 0
        expected = f"{entry['method']} {entry['route']} {entry['status']} "
        assert entry["message"].startswith(expected)
        assert entry["message"].endswith(" ms")


async def test_the_access_line_carries_the_trace_id(client: AsyncClient) -> None:
    with json_lines() as lines, tracer.start_as_current_span("client") as span:
        await client.get("/api/v1/widgets")
    [entry] = [e for e in lines() if e["logger"] == ACCESS_LOGGER]
    assert entry["trace_id"] == hex_ids(span)[0]


async def test_a_crash_is_logged_as_a_500_access_line(client: AsyncClient) -> None:
    with json_lines() as lines:
        response = await client.get("/api/v1/errors/crash")
    assert response.status_code == 500
    [entry] = [e for e in lines() if e["logger"] == ACCESS_LOGGER]
    assert (entry["route"], entry["status"], entry["level"]) == (
        "/api/v1/errors/crash",
        500,
        "INFO",
    )


async def test_probes_and_scrapes_are_access_logged_at_debug(client: AsyncClient) -> None:
    with json_lines(level=logging.DEBUG) as lines:
        for path in ("/healthz", "/readyz", "/metrics"):
            await client.get(path)
    access = [(e["route"], e["level"]) for e in lines() if e["logger"] == ACCESS_LOGGER]
    assert access == [("/healthz", "DEBUG"), ("/readyz", "DEBUG"), ("/metrics", "DEBUG")]
