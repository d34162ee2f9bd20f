"""Tracing: OTEL_* configuration, server, httpx and database spans, and tracing off.

Spans go to an in-memory exporter installed with ``use_tracer_provider``;
the apps are real ``create_app`` apps, served in process (ASGI) or by
uvicorn on a free port when the test needs a real HTTP hop.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from asgi_lifespan import LifespanManager
from fastapi import APIRouter, FastAPI, Request
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import text

from meshmart_common.app import create_app
from meshmart_common.db import ReadSessionDep
from meshmart_common.discovery.registration import service_id
from meshmart_common.service_client import Caller, ServiceClient
from meshmart_common.settings import Environment, ServiceSettings
from meshmart_common.testing import free_port
from meshmart_common.tracing import (
    TracingConfig,
    build_tracer_provider,
    configure_tracing,
    context_properties,
    current_trace_ids,
    resource_attributes,
    tracer,
    tracing_enabled,
)
from meshmart_devstack.launcher import SERVICES as LAUNCHED
from meshmart_devstack.launcher import StackConfig
from meshmart_devstack.launcher import main as launch


def settings_for(tmp_path: Path, name: str = "probe", **values: Any) -> ServiceSettings:
    return ServiceSettings(
        service_name=name,
        environment=Environment.TEST,
        database_url=f"sqlite+aiosqlite:///{tmp_path / (name + '.db')}",
        var_dir=tmp_path,
        **values,
    )


def by_name(spans: InMemorySpanExporter, name: str) -> ReadableSpan:
    matches = [span for span in spans.get_finished_spans() if span.name == name]
    names = [span.name for span in spans.get_finished_spans()]
    assert len(matches) == 1, f"{name!r} in {names}"
    return matches[0]


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


# --- configuration ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "exporters", "protocol"),
    [
        ({}, (), "http/protobuf"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"}, ("otlp",), "http/protobuf"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ("otlp",), None),
        ({"OTEL_TRACES_EXPORTER": "console"}, ("console",), None),
        ({"OTEL_TRACES_EXPORTER": "otlp, console"}, ("otlp", "console"), None),
        (
            {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
            (),
            None,
        ),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, (), None),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            ("otlp",),
            "grpc",
        ),
    ],
)
def test_the_otel_environment_decides_whether_and_where_spans_go(
    environ: dict[str, str], exporters: tuple[str, ...], protocol: str | None
) -> None:
    config = TracingConfig.from_environ(environ)
    assert config.exporters == exporters
    assert config.enabled == bool(exporters)
    if protocol is not None:
        assert config.protocol == protocol


def test_without_any_otel_variable_tracing_is_off() -> None:
    assert TracingConfig.from_environ({}).describe() == "off"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "unknown exporter 'jaeger'"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
            "not supported",
        ),
    ],
)
def test_an_exporter_or_protocol_meshmart_lacks_is_refused_at_start_up(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        TracingConfig.from_environ(environ)


def test_the_resource_names_the_service_its_version_environment_and_instance(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path, "product", port=8002, service_version="1.2.3")
    settings.environment = Environment.PRODUCTION

    attributes = resource_attributes(settings, {})

    assert attributes["service.name"] == "product"
    assert attributes["service.version"] == "1.2.3"
    assert attributes["deployment.environment"] == "production"
    assert attributes["deployment.environment.name"] == "production"
    # The same id the instance registers in Consul with.
    assert attributes["service.instance.id"] == service_id(settings, "127.0.0.1")
    assert attributes["service.instance.id"] == "product-127.0.0.1-8002"


def test_otel_service_name_and_resource_attributes_override_the_defaults(tmp_path: Path) -> None:
    attributes = resource_attributes(
        settings_for(tmp_path, "product"),
        {
            "OTEL_SERVICE_NAME": "catalogue",
            "OTEL_RESOURCE_ATTRIBUTES": "k8s.pod.name=product-7d9,service.version=9",
        },
    )
    assert attributes["service.name"] == "catalogue"
    assert attributes["k8s.pod.name"] == "product-7d9"
    assert attributes["service.version"] == "9"


def test_the_built_provider_carries_the_resource_and_samples_parent_based(
    tmp_path: Path,
) -> None:
    attributes = resource_attributes(settings_for(tmp_path, "order", port=8003), {})
    provider = build_tracer_provider(TracingConfig(exporters=("console",)), attributes)
    try:
        assert provider.resource.attributes["service.name"] == "order"
        assert provider.resource.attributes["service.instance.id"] == "order-127.0.0.1-8003"
        assert "ParentBased" in type(provider.sampler).__name__
    finally:
        provider.shutdown()


def test_configure_tracing_with_nothing_set_installs_nothing(tmp_path: Path) -> None:
    assert configure_tracing(settings_for(tmp_path), {}) is None
    assert not tracing_enabled()


# --- server and database spans --------------------------------------------------------

probe = APIRouter(prefix="/probes", tags=["probes"])


@probe.get("/{probe_id}")
async def read_probe(probe_id: int, session: ReadSessionDep, request: Request) -> dict[str, Any]:
    """Run one query and report the trace ids the handler sees."""
    value = await session.scalar(text("SELECT :v").bindparams(v=probe_id))
    ids = current_trace_ids()
    span = trace.get_current_span()
    return {
        "value": value,
        "trace_id": ids[0] if ids else None,
        "span_id": ids[1] if ids else None,
        "recording": span.is_recording(),
        "traceparent": request.headers.get("traceparent"),
        "properties": context_properties(),
    }


def probe_app(
    tmp_path: Path, name: str = "probe", routers: list[APIRouter] | None = None
) -> FastAPI:
    return create_app(
        settings_for(tmp_path, name),
        title=name,
        description="tracing probe",
        routers=routers or [probe],
    )


@contextlib.asynccontextmanager
async def in_process(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def test_each_request_gets_a_server_span_named_by_its_route_template(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    async with in_process(probe_app(tmp_path)) as http:
        answer = (await http.get("/api/v1/probes/42")).json()
        assert (await http.get("/healthz")).status_code == 200

    server = by_name(spans, "GET /api/v1/probes/{probe_id}")
    assert server.kind is SpanKind.SERVER
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/api/v1/probes/{probe_id}"
    assert (
        server.attributes.get(
            "http.response.status_code", server.attributes.get("http.status_code")
        )
        == 200
    )
    # The handler ran inside it: its log lines get these ids.
    assert answer["value"] == 42
    assert answer["recording"] is True
    assert answer["trace_id"] == format(server.context.trace_id, "032x")
    assert answer["properties"]["traceparent"].startswith(f"00-{answer['trace_id']}-")
    # The query is a database span below the request.
    [query] = [s for s in spans.get_finished_spans() if s.name.startswith("SELECT")]
    assert query.name == "SELECT probe.db"  # the file name, not its whole path
    assert query.kind is SpanKind.CLIENT
    assert query.context.trace_id == server.context.trace_id
    assert parent_id(query) == server.context.span_id
    assert query.attributes is not None
    assert query.attributes.get("db.system.name", query.attributes.get("db.system")) == "sqlite"
    # Probes are not traced.
    assert not [s for s in spans.get_finished_spans() if "healthz" in s.name]


async def test_database_work_outside_any_span_makes_no_trace_of_its_own(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    app = probe_app(tmp_path)
    async with app.state.database.session() as session:
        await session.execute(text("SELECT 1"))  # what the relay's polling does

    with tracer().start_as_current_span("job"):
        async with app.state.database.session() as session:
            await session.execute(text("SELECT 2"))
    await app.state.database.dispose()

    job = by_name(spans, "job")
    queries = [s for s in spans.get_finished_spans() if s.name.startswith("SELECT")]
    assert [parent_id(q) for q in queries] == [job.context.span_id]


# --- httpx client spans and propagation -------------------------------------------------


@contextlib.asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """``app`` served by uvicorn on a free port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(300):
            if server.started or task.done():
                break
            await asyncio.sleep(0.02)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)


def caller_router(product: ServiceClient) -> APIRouter:
    router = APIRouter(prefix="/relays", tags=["relays"])

    @router.get("/{probe_id}")
    async def relay(probe_id: int, request: Request) -> dict[str, Any]:
        """Ask the other service through a ServiceClient, as order asks product."""
        answer = await product.get(f"/api/v1/probes/{probe_id}", caller=Caller.of_request(request))
        body: dict[str, Any] = answer.body
        return body

    return router


async def test_a_call_to_another_service_carries_the_trace_in_its_traceparent_header(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    async with served(probe_app(tmp_path, "product")) as product_url:
        product = ServiceClient("product", product_url)
        caller = probe_app(tmp_path, "order", routers=[caller_router(product)])
        try:
            async with in_process(caller) as http:
                response = await http.get("/api/v1/relays/7")
        finally:
            await product.aclose()
    assert response.status_code == 200, response.text
    seen = response.json()

    incoming = by_name(spans, "GET /api/v1/relays/{probe_id}")
    client = next(
        s
        for s in spans.get_finished_spans()
        if s.kind is SpanKind.CLIENT and s.name.startswith("GET")
    )
    callee = by_name(spans, "GET /api/v1/probes/{probe_id}")
    trace_id = incoming.context.trace_id
    assert {incoming.context.trace_id, client.context.trace_id, callee.context.trace_id} == {
        trace_id
    }
    assert parent_id(client) == incoming.context.span_id
    assert parent_id(callee) == client.context.span_id
    # What the callee received on the wire: the client span's context.
    version, sent_trace, sent_parent, flags = seen["traceparent"].split("-")
    assert (version, sent_trace, sent_parent) == (
        "00",
        f"{trace_id:032x}",
        f"{client.context.span_id:016x}",
    )
    assert int(flags, 16) & 0x01  # sampled
    assert seen["trace_id"] == f"{trace_id:032x}"


# --- tracing off ------------------------------------------------------------------


async def test_with_tracing_off_no_span_records_and_nothing_is_propagated(
    tmp_path: Path,
) -> None:
    assert not tracing_enabled()
    app = probe_app(tmp_path)
    assert not getattr(app, "_is_instrumented_by_opentelemetry", False)

    async with in_process(app) as http:
        answer = (await http.get("/api/v1/probes/3")).json()

    assert answer["value"] == 3
    assert answer["recording"] is False
    assert answer["trace_id"] is None
    assert answer["properties"] == {}
    with tracer().start_as_current_span("anything") as span:
        assert not span.is_recording()
        assert current_trace_ids() is None


# --- make run ---------------------------------------------------------------------


def test_make_run_passes_the_otel_variables_on_and_names_each_process(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "everything")  # would merge five services into one
    config = StackConfig(host="127.0.0.1", ports=dict(LAUNCHED), var_dir=tmp_path, extra_env={})

    product = config.env_for("product")

    assert product["OTEL_TRACES_EXPORTER"] == "console"
    assert product["OTEL_SERVICE_NAME"] == "product"
    assert config.env_for("order")["OTEL_SERVICE_NAME"] == "order"
    assert config.tracing().describe() == "console"


def test_make_run_refuses_an_unusable_tracing_setting_before_starting_anything(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    out = io.StringIO()

    assert launch(["run", "--var-dir", str(tmp_path)], out=out) == 2
    assert "unknown exporter 'zipkin'" in out.getvalue()
    assert not list(tmp_path.glob("*.db"))  # nothing migrated
