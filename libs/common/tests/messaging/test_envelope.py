"""CloudEvents envelopes, typed payloads, the registry and outgoing messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from meshmart_common.messaging.envelope import (
    CloudEvent,
    EventPayload,
    EventRegistry,
    InvalidEnvelope,
    InvalidEvent,
    outgoing_message,
    trace_properties,
)
from meshmart_common.messaging.topology import ORDER_EVENTS


class OrderCreated(EventPayload):
    event_type = "order.created"  # topic comes from the topology

    order_id: int
    total_cents: int


class PointsAwarded(EventPayload):
    event_type = "test.points_awarded"
    topic = "test-points"

    user_id: int
    points: int


def test_payload_without_topic_takes_it_from_the_topology() -> None:
    assert OrderCreated.topic == ORDER_EVENTS
    assert PointsAwarded.topic == "test-points"


def test_payload_with_an_unknown_type_and_no_topic_is_refused() -> None:
    with pytest.raises(TypeError, match="needs a topic"):

        class Orphan(EventPayload):
            event_type = "test.orphan"


def test_an_abstract_family_base_needs_no_type() -> None:
    class OrderEvent(EventPayload):
        order_id: int

    class OrderShipped(OrderEvent):
        event_type = "order.shipped"
        carrier: str

    shipped = OrderShipped(order_id=1, carrier="DHL")
    assert shipped.topic == ORDER_EVENTS
    assert shipped.model_dump() == {"order_id": 1, "carrier": "DHL"}


def test_envelope_round_trips_through_json_with_rfc3339_utc_time() -> None:
    moment = datetime(2025, 5, 1, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    event = OrderCreated(order_id=42, total_cents=1999).to_event(
        source="/meshmart/order", subject="42", time=moment
    )

    document = json.loads(event.to_json())

    assert document == {
        "specversion": "1.0",
        "id": event.id,
        "source": "/meshmart/order",
        "type": "order.created",
        "time": "2025-05-01T12:00:00.123456Z",
        "datacontenttype": "application/json",
        "subject": "42",
        "data": {"order_id": 42, "total_cents": 1999},
    }
    parsed = CloudEvent.from_json(event.to_json())
    assert parsed == event
    assert parsed.time == datetime(2025, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def test_each_event_gets_its_own_id() -> None:
    first = OrderCreated(order_id=1, total_cents=1).to_event(source="/s", subject="1")
    second = OrderCreated(order_id=1, total_cents=1).to_event(source="/s", subject="1")
    assert first.id != second.id


def test_envelope_ignores_unknown_extension_attributes() -> None:
    body = {
        "specversion": "1.0",
        "id": "e-1",
        "source": "/meshmart/order",
        "type": "order.created",
        "time": "2025-05-01T12:00:00Z",
        "data": {"order_id": 1, "total_cents": 5},
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }
    event = CloudEvent.from_json(json.dumps(body))
    assert event.id == "e-1"
    assert event.datacontenttype == "application/json"
    assert OrderCreated.from_event(event) == OrderCreated(order_id=1, total_cents=5)


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe not utf-8",
        b"not json",
        b"[1, 2]",
        b'{"specversion": "1.0", "id": "x", "source": "/s", "time": "2025-05-01T12:00:00Z"}',
        b'{"specversion": "0.3", "id": "x", "source": "/s", "type": "t", "data": {}}',
        b'{"specversion": "1.0", "id": "x", "source": "/s", "type": "t", "data": [1]}',
        b'{"specversion": "1.0", "id": "x", "source": "/s", "type": "t", '
        b'"time": "2025-05-01T12:00:00"}',
        b'{"specversion": "1.0", "id": "", "source": "/s", "type": "t"}',
    ],
    ids=[
        "binary",
        "not-json",
        "array",
        "no-type",
        "old-spec",
        "data-not-object",
        "naive-time",
        "empty-id",
    ],
)
def test_bodies_that_are_not_cloudevents_are_rejected(body: bytes) -> None:
    with pytest.raises(InvalidEnvelope):
        CloudEvent.from_json(body)


def test_from_event_rejects_another_type_and_invalid_data() -> None:
    points = PointsAwarded(user_id=1, points=5).to_event(source="/s", subject="1")
    with pytest.raises(InvalidEvent, match=r"not 'order\.created'"):
        OrderCreated.from_event(points)

    broken = CloudEvent(source="/s", type="order.created", data={"order_id": "many"})
    with pytest.raises(InvalidEvent, match="invalid data"):
        OrderCreated.from_event(broken)


def test_payloads_are_frozen_and_tolerate_new_fields() -> None:
    event = CloudEvent(
        source="/s",
        type="order.created",
        data={"order_id": 3, "total_cents": 10, "currency": "USD"},
    )
    payload = OrderCreated.from_event(event)
    assert payload == OrderCreated(order_id=3, total_cents=10)
    with pytest.raises(ValueError, match="frozen"):
        payload.order_id = 4  # type: ignore[misc]


def test_registry_parses_each_type_into_its_class() -> None:
    registry = EventRegistry(OrderCreated)
    registry.register(PointsAwarded)

    order = OrderCreated(order_id=7, total_cents=700).to_event(source="/s", subject="7")
    points = PointsAwarded(user_id=2, points=70).to_event(source="/s", subject="2")

    assert registry.parse(order) == OrderCreated(order_id=7, total_cents=700)
    assert registry.parse(points) == PointsAwarded(user_id=2, points=70)
    assert registry.event_types == {"order.created", "test.points_awarded"}
    assert "order.created" in registry


def test_registry_refuses_unknown_types_and_a_second_class_per_type() -> None:
    registry = EventRegistry(OrderCreated)
    with pytest.raises(InvalidEvent, match="unknown event type"):
        registry.parse(CloudEvent(source="/s", type="order.exploded"))

    class OtherOrderCreated(EventPayload):
        event_type = "order.created"
        order_id: int

    with pytest.raises(TypeError, match="already registered"):
        registry.register(OtherOrderCreated)
    registry.register(OrderCreated)  # the same class again is fine


def test_outgoing_message_uses_type_as_tag_and_subject_as_key() -> None:
    event = OrderCreated(order_id=9, total_cents=900).to_event(source="/s", subject="9")
    due = datetime(2030, 1, 1, tzinfo=UTC)
    message = outgoing_message(
        event,
        ORDER_EVENTS,
        properties=trace_properties("00-abc-def-01", "vendor=1"),
        deliver_at=due,
    )
    assert message.topic == ORDER_EVENTS
    assert message.tag == "order.created"
    assert message.key == "9"
    assert CloudEvent.from_json(message.body) == event
    assert message.properties == {"traceparent": "00-abc-def-01", "tracestate": "vendor=1"}
    assert message.deliver_at == due


def test_outgoing_message_refuses_a_naive_delivery_time() -> None:
    event = OrderCreated(order_id=9, total_cents=900).to_event(source="/s", subject="9")
    with pytest.raises(ValueError, match="timezone-aware"):
        outgoing_message(event, ORDER_EVENTS, deliver_at=datetime(2030, 1, 1))


def test_trace_properties_leave_out_missing_values() -> None:
    assert trace_properties(None) == {}
    assert trace_properties("00-abc-def-01") == {"traceparent": "00-abc-def-01"}
    assert trace_properties(None, "vendor=1") == {}
