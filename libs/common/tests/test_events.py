"""The event catalogue agrees with the messaging topology."""

from datetime import UTC, datetime

from meshmart_common.events import EVENT_TYPES, OrderCreated, OrderLine
from meshmart_common.messaging.envelope import CloudEvent
from meshmart_common.messaging.topology import EVENT_TOPICS


def test_catalogue_and_topology_name_the_same_event_types_and_topics() -> None:
    assert set(EVENT_TYPES) == set(EVENT_TOPICS)
    for event_type, payload in EVENT_TYPES.items():
        assert payload.event_type == event_type
        assert payload.topic == EVENT_TOPICS[event_type], event_type


def test_a_payload_round_trips_through_a_cloudevents_envelope() -> None:
    created = OrderCreated(
        order_id=7,
        user_id=3,
        lines=[OrderLine(product_id=1, quantity=2, unit_price_cents=1999)],
        subtotal_cents=3998,
        discount_cents=0,
        points_to_redeem=0,
        total_cents=3998,
        created_at=datetime(2026, 11, 27, 8, tzinfo=UTC),
    )
    envelope = created.to_event(source="/meshmart/order", subject=created.aggregate_key())
    parsed = OrderCreated.from_event(CloudEvent.from_json(envelope.to_json()))
    assert parsed == created
    assert envelope.subject == "7"
    assert envelope.type == "order.created"
