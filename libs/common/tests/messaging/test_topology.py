"""The declared topics, event types and consumer groups hang together."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from meshmart_common.messaging import topology
from meshmart_common.messaging.topology import (
    ALL_TAGS,
    CONSUMER_GROUPS,
    EVENT_TOPICS,
    TOPICS,
    TopicKind,
)

SAGA_EVENT_TYPES = {
    "order.created",
    "stock.reserved",
    "stock.rejected",
    "trade.locked",
    "trade.rejected",
    "order.rejected",
    "order.payment_timeout",
    "order.paid",
    "order.cancelled",
}


def test_every_saga_event_type_has_a_topic() -> None:
    assert set(EVENT_TOPICS) >= SAGA_EVENT_TYPES
    assert EVENT_TOPICS["order.payment_timeout"] == "order-timeouts"
    assert EVENT_TOPICS["stock.reserved"] == "product-events"
    assert EVENT_TOPICS["trade.locked"] == "trade-events"


def test_domain_topics_are_normal_and_the_timeout_topic_is_delay() -> None:
    kinds = {topic.name: topic.kind for topic in TOPICS}
    assert kinds == {
        "user-events": TopicKind.NORMAL,
        "product-events": TopicKind.NORMAL,
        "order-events": TopicKind.NORMAL,
        "trade-events": TopicKind.NORMAL,
        "order-timeouts": TopicKind.DELAY,
        "audit-events": TopicKind.NORMAL,
    }
    assert set(EVENT_TOPICS.values()) <= set(kinds)


def test_groups_are_unique_and_read_declared_topics_and_types() -> None:
    names = [group.name for group in CONSUMER_GROUPS]
    assert len(names) == len(set(names))
    for group in CONSUMER_GROUPS:
        topology.topic_spec(group.topic)  # raises when undeclared
        assert group.tags, group.name
        for tag in group.tags:
            assert tag == ALL_TAGS or EVENT_TOPICS[tag] == group.topic, (group.name, tag)


def test_each_saga_step_has_its_consumer() -> None:
    def tags(name: str) -> set[str]:
        return set(topology.consumer_group(name).tags)

    assert {"order.created", "order.paid", "order.cancelled", "order.rejected"} <= tags(
        "product-order-events"
    )
    assert {"order.created", "order.paid", "order.cancelled", "order.rejected"} <= tags(
        "trade-order-events"
    )
    assert tags("order-stock-replies") == {"stock.reserved", "stock.rejected"}
    assert tags("order-trade-replies") == {"trade.locked", "trade.rejected"}
    assert tags("order-payment-timeouts") == {"order.payment_timeout"}
    data_topics = {group.topic for group in topology.groups_of("data")}
    assert data_topics == {
        "user-events",
        "product-events",
        "order-events",
        "trade-events",
        "audit-events",
    }
    for group in topology.groups_of("data"):
        expected = ("audit.recorded",) if group.topic == "audit-events" else (ALL_TAGS,)
        assert group.tags == expected, group.name


def test_audit_entries_have_a_topic_of_their_own_that_only_data_reads() -> None:
    assert EVENT_TOPICS["audit.recorded"] == "audit-events"
    readers = [group for group in CONSUMER_GROUPS if group.topic == "audit-events"]
    assert [(group.name, group.service) for group in readers] == [("data-audit-events", "data")]
    # The domain topics' groups never see audit entries.
    assert all(
        "audit.recorded" not in group.tags for group in CONSUMER_GROUPS if group not in readers
    )


def test_lookups_fail_for_unknown_names() -> None:
    with pytest.raises(KeyError):
        topology.topic_spec("nope")
    with pytest.raises(KeyError):
        topology.consumer_group("nope")


def test_running_the_module_prints_the_topology_as_json() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "meshmart_common.messaging.topology"],
        capture_output=True,
        check=True,
        text=True,
        timeout=60,
    )
    document = json.loads(result.stdout)
    assert document == topology.topology_document()
    assert {"name": "order-timeouts", "kind": "DELAY", "owner": "order"}.items() <= next(
        t for t in document["topics"] if t["name"] == "order-timeouts"
    ).items()
    assert len(document["consumer_groups"]) == len(CONSUMER_GROUPS)
