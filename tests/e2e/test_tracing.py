"""One checkout is one trace across order, product, trade and data, on both buses.

The test runs an OTLP/HTTP receiver of its own (POST /v1/traces, protobuf
bodies parsed with opentelemetry-proto) and starts the five real service
processes exporting to it with the standard OTEL_* variables. It places one
order, waits for AWAITING_PAYMENT, and then checks the trace that starts at
``POST /api/v1/orders``: spans from every service, the messages' PRODUCER and
CONSUMER spans, and every CONSUMER span hanging below the PRODUCER span of
the very message it handled, across the local bus and across RocketMQ.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto

from tests.e2e.test_checkout_saga import SAGA_ENV
from tests.processes import services
from tests.shop import eventually

pytestmark = pytest.mark.e2e

SERVER = SpanProto.SpanKind.SPAN_KIND_SERVER
PRODUCER = SpanProto.SpanKind.SPAN_KIND_PRODUCER
CONSUMER = SpanProto.SpanKind.SPAN_KIND_CONSUMER
TRACED_SERVICES = {"order", "product", "trade", "data"}
# (service, event type) of the CONSUMER spans a checkout must produce before AWAITING_PAYMENT.
EXPECTED_HANDLINGS = {
    ("product", "order.created"),
    ("trade", "order.created"),
    ("data", "order.created"),
    ("order", "stock.reserved"),
    ("order", "trade.locked"),
}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(item) for item in value.array_value.values)
    return getattr(value, kind) if kind else None


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the collector got it, with its process's resource."""

    service: str
    resource: dict[str, Any]
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    attributes: dict[str, Any]

    @property
    def event_type(self) -> Any:
        return self.attributes.get("messaging.rocketmq.message.tag")


@dataclass
class OtlpReceiver:
    """An OTLP/HTTP trace receiver on 127.0.0.1 that keeps every span it is sent."""

    port: int = 0
    spans: list[ReceivedSpan] = field(default_factory=list)
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        received = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ReceivedSpan(
                            service=str(resource.get("service.name")),
                            resource=resource,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=span.kind,
                            attributes={a.key: _value(a.value) for a in span.attributes},
                        )
                    )
        with self.lock:
            self.spans.extend(received)
            self.requests += 1

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self.lock:
            return [span for span in self.spans if span.trace_id == trace_id]

    def find(self, **wanted: Any) -> list[ReceivedSpan]:
        with self.lock:
            return [
                span
                for span in self.spans
                if all(getattr(span, key) == value for key, value in wanted.items())
            ]


@contextmanager
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """Serve an :class:`OtlpReceiver` on a free port until the block ends."""
    receiver = OtlpReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces":
                self.send_error(404)
                return
            receiver.add(body)
            answer = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per export would drown the test output

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


KIND_NAMES: dict[int, str] = {
    int(SERVER): "server",
    int(SpanProto.SpanKind.SPAN_KIND_CLIENT): "client",
    int(PRODUCER): "producer",
    int(CONSUMER): "consumer",
}


def render(spans: list[ReceivedSpan]) -> str:
    """The trace as an indented tree (printed: pytest shows it when the test fails)."""
    children: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        children.setdefault(span.parent_id, []).append(span)
    lines: list[str] = []

    def walk(span: ReceivedSpan, depth: int) -> None:
        kind = KIND_NAMES.get(span.kind, "internal")
        lines.append(f"{span.service:<8} {'  ' * depth}{span.name}  [{kind}]")
        for child in children.get(span.span_id, []):
            walk(child, depth + 1)

    known = {span.span_id for span in spans}
    for span in spans:
        if not span.parent_id or span.parent_id not in known:
            walk(span, 0)
    return "\n".join(lines)


def tracing_env(receiver: OtlpReceiver) -> dict[str, str]:
    return {
        **SAGA_ENV,
        "PAYMENT_TIMEOUT_SECONDS": "3600",  # no timeout message handled while the test runs
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_TRACES_SAMPLER": "always_on",
    }


def _checkout_trace(base: Path, extra_env: dict[str, str], receiver: OtlpReceiver) -> None:
    started = time.monotonic()

    def phase(what: str) -> None:
        print(f"{time.monotonic() - started:6.1f} s  {what}")

    with services(base, {**tracing_env(receiver), **extra_env}) as (running, shop):
        phase("stack up")
        buyer = shop.customer()
        shop.grant_points(buyer, 100)
        product_id = shop.product(stock=5, price_cents=1500)
        created = shop.checkout(buyer, product_id, 2, points_to_redeem=50)
        assert created.status_code == 201, created.text
        order = shop.wait_status(buyer, created.json()["id"], "AWAITING_PAYMENT", "REJECTED")
        assert order["status"] == "AWAITING_PAYMENT", order
        phase("order awaiting payment")

        [root] = eventually(
            lambda: receiver.find(service="order", name="POST /api/v1/orders", kind=SERVER),
            what="the checkout's server span",
        )

        def complete() -> list[ReceivedSpan]:
            spans = receiver.trace(root.trace_id)
            handled = {(s.service, s.event_type) for s in spans if s.kind == CONSUMER}
            known = {s.span_id for s in spans}
            # Processes export on their own schedules: a child may arrive before its parent.
            linked = all(s.parent_id in known for s in spans if s.parent_id)
            return spans if handled >= EXPECTED_HANDLINGS and linked else []

        spans = eventually(complete, what="every saga step in the checkout's trace")
        phase("trace complete")
        ports = dict(running.ports)
    phase("stack stopped")

    print(render(spans))
    by_id = {span.span_id: span for span in spans}
    assert {span.service for span in spans} >= TRACED_SERVICES

    # One trace: the checkout request is its only root, every other span hangs below it.
    roots = [span for span in spans if not span.parent_id]
    assert roots == [root]
    for span in spans:
        if span is not root:
            assert span.parent_id in by_id, f"{span.service}: {span.name} has a foreign parent"

    # The synchronous calls: order asked product for prices and trade for a quote.
    servers = {(s.service, s.name) for s in spans if s.kind == SERVER}
    assert ("product", "GET /api/v1/products/{product_id}") in servers
    assert ("trade", "POST /api/v1/quotes") in servers

    # Across the broker: each CONSUMER span is the child of the PRODUCER span of its message.
    producers = [s for s in spans if s.kind == PRODUCER]
    consumers = [s for s in spans if s.kind == CONSUMER]
    assert {s.event_type for s in producers} >= {"order.created", "stock.reserved", "trade.locked"}
    for consumer in consumers:
        producer = by_id[consumer.parent_id]
        assert producer.kind == PRODUCER, f"{consumer.name} in {consumer.service}"
        assert (
            producer.attributes["messaging.message.id"]
            == consumer.attributes["messaging.message.id"]
        )
        assert (
            producer.attributes["messaging.destination.name"]
            == consumer.attributes["messaging.destination.name"]
        )
        assert producer.event_type == consumer.event_type
        assert consumer.attributes["messaging.operation.type"] == "process"
        assert consumer.attributes["messaging.consumer.group.name"]
        assert consumer.attributes["messaging.system"] == producer.attributes["messaging.system"]
    # Each PRODUCER span sits below the work that wrote its outbox row, in its own service.
    for producer in producers:
        writer = by_id[producer.parent_id]
        assert writer.service == producer.service
        assert writer.kind in (SERVER, CONSUMER)
        assert producer.attributes["messaging.operation.type"] == "send"
    created_send = next(s for s in producers if s.event_type == "order.created")
    assert by_id[created_send.parent_id] is root

    # Each process names itself: the instance id is the one it registers in Consul with.
    for span in spans:
        assert span.resource["service.instance.id"] == (
            f"{span.service}-127.0.0.1-{ports[span.service]}"
        )
        assert span.resource["deployment.environment"] == "development"
        assert span.resource["service.version"]


def test_a_checkout_is_one_trace_across_the_local_bus(tmp_path: Path) -> None:
    started = time.monotonic()
    with otlp_receiver() as receiver:
        _checkout_trace(tmp_path, {}, receiver)
        systems = {
            s.attributes.get("messaging.system") for s in receiver.spans if s.kind == CONSUMER
        }
    assert systems == {"meshmart-local-bus"}
    assert time.monotonic() - started < 300  # bounds a hung stack, not speed


def test_a_checkout_is_one_trace_across_rocketmq(tmp_path: Path, rocketmq_server: Any) -> None:
    env = {"BUS_BACKEND": "rocketmq", "ROCKETMQ_ENDPOINTS": rocketmq_server.endpoints}
    with otlp_receiver() as receiver:
        _checkout_trace(tmp_path, env, receiver)
        systems = {
            s.attributes.get("messaging.system") for s in receiver.spans if s.kind == CONSUMER
        }
    assert systems == {"rocketmq"}
