"""OpenTelemetry tracing: configured from the standard OTEL_* variables, off by default.

:func:`configure_tracing` (called by ``create_app``) reads the process
environment the way every OpenTelemetry SDK does:

- ``OTEL_SDK_DISABLED=true`` turns tracing off whatever else is set;
- ``OTEL_TRACES_EXPORTER``: ``otlp``, ``console`` or both (``otlp,console``);
  ``none`` turns tracing off. Unset, tracing is on with ``otlp`` when an OTLP
  endpoint is given (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
  ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) and **off** otherwise: a service that
  nobody collects traces from installs nothing, so tracing costs nothing;
- ``OTEL_EXPORTER_OTLP_PROTOCOL`` (or ``..._TRACES_PROTOCOL``): ``http/protobuf``
  (default, port 4318) or ``grpc`` (port 4317);
- the SDK itself reads the rest: ``OTEL_TRACES_SAMPLER`` / ``_ARG`` (default
  ``parentbased_always_on``), ``OTEL_BSP_*`` (the batch span processor),
  ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_PROPAGATORS``, ``OTEL_RESOURCE_ATTRIBUTES``.

The resource names the process: ``service.name`` (``OTEL_SERVICE_NAME``, else
the service's own name), ``service.version``, ``deployment.environment`` (and
its newer name ``deployment.environment.name``) and ``service.instance.id`` =
``<service>-<address>-<port>``, the id the instance registers in Consul with.

When tracing is on, :func:`instrument_app` adds server spans to the app (named
by route template), client spans to every httpx call (with the W3C
``traceparent`` header), and database spans to the app's engines. Database
spans are only made inside another span (a request or a message): the outbox
relay and the consumers poll their tables several times a second, and a root
trace per poll would bury the interesting ones.

Messages carry the trace through the broker (see :func:`send_span` and
:func:`process_span`): the publisher stores the current context with the
outbox row, the relay's PRODUCER span continues that context and puts its own
into the message properties, and the consumer's CONSUMER span is its child. A
checkout is then one trace from ``POST /api/v1/orders`` through every handler
it sets off.

One tracer provider serves the whole process (a service is one process).
Everything here asks for the provider active *when a span starts*, so tests
can swap in an in-memory exporter with :func:`use_tracer_provider`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.util import types

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

    from meshmart_common.db import Database
    from meshmart_common.messaging.bus import MessageBus, OutgoingMessage, ReceivedMessage
    from meshmart_common.settings import ServiceSettings

logger = logging.getLogger("meshmart.tracing")

TRACER_NAME = "meshmart"
EXPORTERS = ("otlp", "console")
PROTOCOLS = ("http/protobuf", "grpc")
_TRUE = ("true", "1", "yes", "on")
# Probes and scrapes are not worth a trace each (Consul checks /readyz every few seconds).
DEFAULT_EXCLUDED_URLS = r"/(healthz|readyz|metrics)(\?|$)"


# --- configuration ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TracingConfig:
    """What the OTEL_* environment asks for: off, or which exporters and protocol."""

    exporters: tuple[str, ...] = ()
    protocol: str = "http/protobuf"
    endpoint: str | None = None  # for the start-up log line; the exporter reads its own

    @property
    def enabled(self) -> bool:
        """True when at least one exporter is asked for."""
        return bool(self.exporters)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> TracingConfig:
        """Read the configuration; ValueError for an exporter or protocol MeshMart lacks."""
        env = os.environ if environ is None else environ
        if env.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
            return cls()
        endpoint = (
            env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
            or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
            or None
        )
        raw = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
        if raw:
            names = [name.strip() for name in raw.split(",") if name.strip()]
        else:
            # The OpenTelemetry default is "otlp"; MeshMart exports only when
            # told where to, so a laptop without a collector pays nothing.
            names = ["otlp"] if endpoint else []
        exporters = tuple(dict.fromkeys(name for name in names if name != "none"))
        unknown = [name for name in exporters if name not in EXPORTERS]
        if unknown:
            raise ValueError(
                f"OTEL_TRACES_EXPORTER={raw!r}: unknown exporter {unknown[0]!r} "
                f"(use {', '.join(EXPORTERS)} or none)"
            )
        protocol = (
            env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "").strip()
            or env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").strip()
            or "http/protobuf"
        ).lower()
        if "otlp" in exporters and protocol not in PROTOCOLS:
            raise ValueError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported "
                f"(use {' or '.join(PROTOCOLS)})"
            )
        return cls(exporters=exporters, protocol=protocol, endpoint=endpoint)

    def describe(self) -> str:
        """``off``, ``console`` or ``otlp (http/protobuf) to http://...``: for log lines."""
        if not self.enabled:
            return "off"
        parts = []
        for name in self.exporters:
            if name == "otlp":
                where = self.endpoint or (
                    "http://localhost:4317" if self.protocol == "grpc" else "http://localhost:4318"
                )
                parts.append(f"otlp ({self.protocol}) to {where}")
            else:
                parts.append(name)
        return ", ".join(parts)


def resource_attributes(
    settings: ServiceSettings, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The resource of this process: service name, version, environment and instance id.

    ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` win over the
    values derived from the settings.
    """
    from meshmart_common.discovery.registration import advertised_address, service_id

    env = os.environ if environ is None else environ
    try:
        address = advertised_address(settings)
    except ValueError:
        address = settings.host
    attributes = {
        "service.name": settings.service_name,
        "service.namespace": "meshmart",
        "service.version": settings.service_version,
        "service.instance.id": service_id(settings, address),
        "deployment.environment.name": settings.environment.value,
        # The name before semantic conventions 1.27; many backends still look for it.
        "deployment.environment": settings.environment.value,
    }
    for item in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, separator, value = item.partition("=")
        if separator and key.strip():
            attributes[key.strip()] = unquote(value.strip())
    service_name = env.get("OTEL_SERVICE_NAME", "").strip()
    if service_name:
        attributes["service.name"] = service_name
    return attributes


def _exporter(name: str, config: TracingConfig) -> SpanExporter:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        # One line per span: readable among the other services' log lines.
        return ConsoleSpanExporter(formatter=lambda span: span.to_json(indent=None) + "\n")
    if config.protocol == "grpc":
        # Comes with the RocketMQ client's dependencies (opentelemetry-exporter-otlp).
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        return GrpcSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def build_tracer_provider(
    config: TracingConfig, attributes: Mapping[str, str]
) -> SdkTracerProvider:
    """An SDK tracer provider with a batch span processor per exporter of ``config``.

    The sampler comes from OTEL_TRACES_SAMPLER (default: parent-based, always on).
    """
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = SdkTracerProvider(resource=Resource.create(dict(attributes)))
    for name in config.exporters:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name, config)))
    return provider


# --- the process-wide provider ------------------------------------------------------


@dataclass(slots=True)
class _State:
    provider: trace.TracerProvider | None = None
    httpx_instrumented: bool = False


_state = _State()
_NOOP_TRACER = trace.NoOpTracer()


def tracing_enabled() -> bool:
    """True when spans are being recorded in this process."""
    return _state.provider is not None


def active_tracer_provider() -> trace.TracerProvider | None:
    """The provider spans go to (None while tracing is off)."""
    return _state.provider


def configure_tracing(
    settings: ServiceSettings, environ: Mapping[str, str] | None = None
) -> trace.TracerProvider | None:
    """Set up tracing for this process from OTEL_*; the active provider, or None when off.

    ``environ`` (default: the process environment) decides whether tracing is
    on and what the resource says; the exporters and the sampler read the
    process environment themselves, as the SDK does.

    Idempotent: the first call that turns tracing on builds the provider and
    makes it the global one; later calls (more apps in one process, as in
    tests) reuse it. A provider installed with :func:`use_tracer_provider`
    takes precedence.
    """
    if _state.provider is not None:
        return _state.provider
    config = TracingConfig.from_environ(environ)
    if not config.enabled:
        return None
    provider = build_tracer_provider(config, resource_attributes(settings, environ))
    _state.provider = provider
    # Global too, for any library that asks OpenTelemetry directly.
    trace.set_tracer_provider(provider)
    logger.info("tracing: %s", config.describe())
    return provider


@contextmanager
def use_tracer_provider(provider: trace.TracerProvider | None) -> Iterator[None]:
    """Make ``provider`` the active one inside the block (tests: an in-memory exporter).

    ``None`` turns tracing off inside the block.
    """
    previous = _state.provider
    _state.provider = provider
    try:
        yield
    finally:
        _state.provider = previous


async def flush_spans(timeout_millis: int = 5000) -> None:
    """Export the spans still queued (at shutdown, so the last ones are not lost)."""
    provider = _state.provider
    force_flush = getattr(provider, "force_flush", None)
    if force_flush is None:
        return
    import asyncio

    await asyncio.to_thread(force_flush, timeout_millis)


class _ActiveTracer(Tracer):
    """A tracer that hands each span to the provider active at that moment.

    Instrumentations keep the tracer they are given for good; this one lets
    them follow :func:`use_tracer_provider`. With ``needs_parent`` it makes
    no span unless one is current (database spans of background polling).
    """

    def __init__(
        self,
        name: str,
        version: str | None = None,
        schema_url: str | None = None,
        attributes: types.Attributes = None,
        *,
        needs_parent: bool = False,
    ) -> None:
        self._args = (name, version, schema_url, attributes)
        self._needs_parent = needs_parent
        self._cache: tuple[trace.TracerProvider, Tracer] | None = None

    def _delegate(self) -> Tracer:
        provider = _state.provider
        if provider is None:
            return _NOOP_TRACER
        cached = self._cache
        if cached is not None and cached[0] is provider:
            return cached[1]
        tracer = provider.get_tracer(*self._args)
        self._cache = (provider, tracer)
        return tracer

    def _orphan(self, context: Context | None) -> bool:
        if not self._needs_parent:
            return False
        return not trace.get_current_span(context).get_span_context().is_valid

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: trace._Links = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        if self._orphan(context):
            return INVALID_SPAN
        return self._delegate().start_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
        )

    @contextmanager
    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: types.Attributes = None,
        links: trace._Links = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[Span]:
        if self._orphan(context):
            yield INVALID_SPAN
            return
        with self._delegate().start_as_current_span(
            name,
            context,
            kind,
            attributes,
            links,
            start_time,
            record_exception,
            set_status_on_exception,
            end_on_exit,
        ) as span:
            yield span


class _ActiveTracerProvider(trace.TracerProvider):
    """Hands out :class:`_ActiveTracer` s (for instrumentations set up once per process)."""

    def __init__(self, *, needs_parent: bool = False) -> None:
        self._needs_parent = needs_parent

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: types.Attributes = None,
    ) -> Tracer:
        return _ActiveTracer(
            instrumenting_module_name,
            instrumenting_library_version,
            schema_url,
            attributes,
            needs_parent=self._needs_parent,
        )


_ACTIVE = _ActiveTracerProvider()
_tracer = _ActiveTracer(TRACER_NAME)


def tracer() -> Tracer:
    """MeshMart's own tracer (messaging spans); it follows the active provider."""
    return _tracer


# --- instrumentation --------------------------------------------------------------


def instrument_app(app: FastAPI, database: Database | None = None) -> None:
    """Server spans for ``app``, client spans for httpx, spans for ``database``'s engines.

    Call it only when tracing is on (``create_app`` does): nothing is wrapped
    otherwise.
    """
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.metrics import NoOpMeterProvider

    env_excludes = os.environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS") or os.environ.get(
        "OTEL_PYTHON_EXCLUDED_URLS"
    )
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=_ACTIVE,
        meter_provider=NoOpMeterProvider(),  # metrics are Prometheus' job (/metrics)
        excluded_urls=None if env_excludes else DEFAULT_EXCLUDED_URLS,
        # The per-message "http send"/"http receive" spans only add noise.
        exclude_spans=["receive", "send"],
    )
    if not _state.httpx_instrumented:
        # Every httpx transport of the process: the ServiceClients' shared
        # client, the JWKS fetch. Adds a client span and the traceparent header.
        HTTPXClientInstrumentor().instrument(
            tracer_provider=_ACTIVE, meter_provider=NoOpMeterProvider()
        )
        _state.httpx_instrumented = True
    if database is not None:
        instrument_database(database)


def instrument_database(database: Database) -> None:
    """Spans for each statement on ``database``'s engines, inside a current span only."""
    from opentelemetry.metrics import NoOpMeter

    engine_tracer = _engine_tracer_class()
    engines = {id(engine): engine for engine in (database.engine, database.read_engine)}
    for engine in engines.values():
        sync_engine = engine.sync_engine
        if getattr(sync_engine, "_meshmart_traced", False):
            continue
        engine_tracer(
            _ActiveTracer("opentelemetry.instrumentation.sqlalchemy", needs_parent=True),
            sync_engine,
            NoOpMeter("meshmart").create_up_down_counter("db.client.connections.usage"),
        )
        sync_engine._meshmart_traced = True  # type: ignore[attr-defined]


def _engine_tracer_class() -> type[Any]:
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

    class ShortNameEngineTracer(EngineTracer):
        """Names SQLite spans by file name ("SELECT product.db"), not by the whole path."""

        def _operation_name(self, db_name: object, statement: object) -> str:
            if isinstance(db_name, str) and "/" in db_name:
                db_name = db_name.rsplit("/", 1)[1]
            name: str = super()._operation_name(db_name, statement)  # type: ignore[no-untyped-call]
            return name

    return ShortNameEngineTracer


# --- log correlation and propagation -----------------------------------------------------


def current_trace_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` of the current span as lower-case hex, or None outside one.

    For log lines: the 32- and 16-digit ids Jaeger and the W3C traceparent use.
    """
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def context_properties() -> dict[str, str]:
    """The current trace context as message properties (``traceparent``, ``tracestate``).

    Empty outside a span, so nothing is stored when tracing is off.
    """
    if not trace.get_current_span().get_span_context().is_valid:
        return {}
    from opentelemetry import propagate  # loads the propagators: only once tracing is on

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


# --- messaging spans -----------------------------------------------------------------------

MESSAGING_SYSTEMS = {"rocketmq": "rocketmq", "local": "meshmart-local-bus"}
_PROPAGATION_KEYS = ("traceparent", "tracestate")


def messaging_system(bus: MessageBus) -> str:
    """``messaging.system`` of a bus: ``rocketmq`` or ``meshmart-local-bus``."""
    return MESSAGING_SYSTEMS.get(bus.name, bus.name)


def _message_attributes(
    *, system: str, operation: str, topic: str, tag: str, key: str
) -> dict[str, types.AttributeValue]:
    attributes: dict[str, types.AttributeValue] = {
        "messaging.system": system,
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
        "messaging.destination.name": topic,
    }
    # The local bus copies RocketMQ's model (tag = event type, key = aggregate
    # id), so it gets the same attributes and both look alike in Jaeger.
    if tag:
        attributes["messaging.rocketmq.message.tag"] = tag
    if key:
        attributes["messaging.rocketmq.message.keys"] = (key,)
    return attributes


def _span_name(operation: str, topic: str, tag: str) -> str:
    # "{operation} {destination}" by the conventions, plus the tag (the event
    # type), which is what a reader of the waterfall wants to see.
    return f"{operation} {topic} {tag}".rstrip()


@dataclass(slots=True)
class MessageSend:
    """The message to send (its properties carry the PRODUCER span's context) and its span."""

    message: OutgoingMessage
    span: Span

    def sent(self, message_id: str) -> None:
        """Record the id the bus gave the message."""
        if self.span.is_recording():
            self.span.set_attribute("messaging.message.id", message_id)


@contextmanager
def send_span(
    message: OutgoingMessage,
    *,
    system: str,
    event_id: str | None = None,
) -> Iterator[MessageSend]:
    """A PRODUCER span around publishing ``message``, child of the context in its properties.

    The outbox relay publishes after the request that wrote the event has
    ended; the trace context stored with the row makes this span that
    request's child. The message goes out with this span's context, so the
    consumers' spans hang below the send. Send ``MessageSend.message``.
    """
    if _state.provider is None:
        yield MessageSend(message, INVALID_SPAN)
        return
    from opentelemetry import propagate

    stored = dict(message.properties)
    parent = propagate.extract(stored) if "traceparent" in stored else None
    attributes = _message_attributes(
        system=system, operation="send", topic=message.topic, tag=message.tag, key=message.key
    )
    if event_id:
        attributes["cloudevents.event_id"] = event_id
    if message.tag:
        attributes["cloudevents.event_type"] = message.tag
    if message.deliver_at is not None:
        attributes["messaging.rocketmq.message.type"] = "delay"
        attributes["messaging.rocketmq.message.delivery_timestamp"] = int(
            message.deliver_at.timestamp() * 1000
        )
    with _tracer.start_as_current_span(
        _span_name("send", message.topic, message.tag),
        context=parent,
        kind=SpanKind.PRODUCER,
        attributes=attributes,
    ) as span:
        properties = {k: v for k, v in stored.items() if k not in _PROPAGATION_KEYS}
        propagate.inject(properties)
        yield MessageSend(dataclasses.replace(message, properties=properties), span)


@contextmanager
def process_span(message: ReceivedMessage, *, group: str, system: str) -> Iterator[Span]:
    """A CONSUMER span around handling ``message``, child of the producer's context.

    Without a trace context in the message (an older producer, tracing off
    there) the span starts a trace of its own.
    """
    if _state.provider is None:
        yield INVALID_SPAN
        return
    from opentelemetry import propagate

    parent = propagate.extract(dict(message.properties))
    attributes = _message_attributes(
        system=system, operation="process", topic=message.topic, tag=message.tag, key=message.key
    )
    attributes["messaging.message.id"] = message.message_id
    attributes["messaging.consumer.group.name"] = group
    attributes["messaging.meshmart.delivery_attempt"] = message.delivery_attempt
    with _tracer.start_as_current_span(
        _span_name("process", message.topic, message.tag),
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes=attributes,
    ) as span:
        yield span


def record_outcome(span: Span, outcome: str) -> None:
    """Note what became of a message (handled, duplicate, retrying, dead_lettered)."""
    if span.is_recording():
        span.set_attribute("messaging.meshmart.outcome", outcome)


def record_failure(exc: BaseException) -> None:
    """Mark the current span failed with ``exc`` (a handler error the runner caught)."""
    span = trace.get_current_span()
    if span.is_recording():
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:200]))


__all__ = [
    "MessageSend",
    "TracingConfig",
    "active_tracer_provider",
    "configure_tracing",
    "context_properties",
    "current_trace_ids",
    "flush_spans",
    "instrument_app",
    "instrument_database",
    "messaging_system",
    "process_span",
    "record_failure",
    "record_outcome",
    "send_span",
    "tracer",
    "tracing_enabled",
    "use_tracer_provider",
]
