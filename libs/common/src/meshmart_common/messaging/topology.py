"""Topics, event types and consumer groups of MeshMart: plain data, standard library only.

Each domain owns one NORMAL topic and publishes its events there with the
event type as the message tag; the payment timeout travels on a DELAY topic.
Audit entries (``audit.recorded``) of every service share one topic of their
own, ``audit-events``, which only the data service's audit log reads.
A consumer group reads exactly one topic (filtered by tags) and keeps its own
progress, so each service gets every event it subscribes to.

The RocketMQ set-up script creates what this module declares; run
``python -m meshmart_common.messaging.topology`` to print it as JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum


class TopicKind(StrEnum):
    """RocketMQ 5 message type a topic accepts."""

    NORMAL = "NORMAL"
    DELAY = "DELAY"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic: its name, message type and owning service."""

    name: str
    kind: TopicKind
    owner: str
    description: str


@dataclass(frozen=True, slots=True)
class ConsumerGroupSpec:
    """A consumer group: one topic, a set of tags (``*`` = every tag), one service."""

    name: str
    topic: str
    tags: tuple[str, ...]
    service: str
    description: str


ALL_TAGS = "*"

# --- topics -------------------------------------------------------------------

USER_EVENTS = "user-events"
PRODUCT_EVENTS = "product-events"
ORDER_EVENTS = "order-events"
TRADE_EVENTS = "trade-events"
ORDER_TIMEOUTS = "order-timeouts"
AUDIT_EVENTS = "audit-events"

# --- event types (message tags) -----------------------------------------------

# Checkout saga (ARCHITECTURE.md, "Calls and events").
ORDER_CREATED = "order.created"
STOCK_RESERVED = "stock.reserved"
STOCK_REJECTED = "stock.rejected"
TRADE_LOCKED = "trade.locked"
TRADE_REJECTED = "trade.rejected"
ORDER_REJECTED = "order.rejected"
ORDER_PAYMENT_TIMEOUT = "order.payment_timeout"
ORDER_PAID = "order.paid"
ORDER_CANCELLED = "order.cancelled"
# Other state changes that analytics counts.
USER_REGISTERED = "user.registered"
ORDER_SHIPPED = "order.shipped"
ORDER_COMPLETED = "order.completed"
ORDER_AWAITING_PAYMENT = "order.awaiting_payment"
PRODUCT_CREATED = "product.created"
PRODUCT_UPDATED = "product.updated"
STOCK_CHANGED = "stock.changed"
POINTS_CHANGED = "points.changed"
COUPON_CLAIMED = "coupon.claimed"
# Security-relevant actions (logins, password changes, admin edits), from every service.
AUDIT_RECORDED = "audit.recorded"

EVENT_TOPICS: dict[str, str] = {
    USER_REGISTERED: USER_EVENTS,
    PRODUCT_CREATED: PRODUCT_EVENTS,
    PRODUCT_UPDATED: PRODUCT_EVENTS,
    STOCK_CHANGED: PRODUCT_EVENTS,
    STOCK_RESERVED: PRODUCT_EVENTS,
    STOCK_REJECTED: PRODUCT_EVENTS,
    ORDER_CREATED: ORDER_EVENTS,
    ORDER_REJECTED: ORDER_EVENTS,
    ORDER_PAID: ORDER_EVENTS,
    ORDER_CANCELLED: ORDER_EVENTS,
    ORDER_SHIPPED: ORDER_EVENTS,
    ORDER_COMPLETED: ORDER_EVENTS,
    ORDER_AWAITING_PAYMENT: ORDER_EVENTS,
    TRADE_LOCKED: TRADE_EVENTS,
    POINTS_CHANGED: TRADE_EVENTS,
    COUPON_CLAIMED: TRADE_EVENTS,
    TRADE_REJECTED: TRADE_EVENTS,
    ORDER_PAYMENT_TIMEOUT: ORDER_TIMEOUTS,
    AUDIT_RECORDED: AUDIT_EVENTS,
}
"""Which topic carries each event type."""

TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(USER_EVENTS, TopicKind.NORMAL, "user", "Account events."),
    TopicSpec(PRODUCT_EVENTS, TopicKind.NORMAL, "product", "Catalogue and stock events."),
    TopicSpec(ORDER_EVENTS, TopicKind.NORMAL, "order", "Order lifecycle events."),
    TopicSpec(TRADE_EVENTS, TopicKind.NORMAL, "trade", "Coupon and points events."),
    TopicSpec(
        ORDER_TIMEOUTS,
        TopicKind.DELAY,
        "order",
        "Delayed order.payment_timeout messages the order service sends itself.",
    ),
    # One topic for the audit entries of every service, apart from the domain
    # topics: the analytics consumers never see them, and access to (and the
    # retention of) who-did-what can be set for this topic alone.
    TopicSpec(
        AUDIT_EVENTS,
        TopicKind.NORMAL,
        "platform",
        "Audit entries (audit.recorded) of user, product, order and trade.",
    ),
)

# What product and trade react to on order-events: reserve/lock on created,
# release on rejected or cancelled, commit/consume on paid.
_ORDER_SAGA_TAGS = (ORDER_CREATED, ORDER_REJECTED, ORDER_PAID, ORDER_CANCELLED)

CONSUMER_GROUPS: tuple[ConsumerGroupSpec, ...] = (
    ConsumerGroupSpec(
        "product-order-events",
        ORDER_EVENTS,
        _ORDER_SAGA_TAGS,
        "product",
        "Reserve, release and commit stock; mark reviews of bought items verified.",
    ),
    ConsumerGroupSpec(
        "trade-order-events",
        ORDER_EVENTS,
        _ORDER_SAGA_TAGS,
        "trade",
        "Lock, release and consume coupons and points; award points on payment.",
    ),
    # The saga replies come from two topics; a group reads one topic (RocketMQ
    # wants every member of a group to subscribe alike), hence two groups.
    ConsumerGroupSpec(
        "order-stock-replies",
        PRODUCT_EVENTS,
        (STOCK_RESERVED, STOCK_REJECTED),
        "order",
        "Stock replies of the checkout saga.",
    ),
    ConsumerGroupSpec(
        "order-trade-replies",
        TRADE_EVENTS,
        (TRADE_LOCKED, TRADE_REJECTED),
        "order",
        "Coupon and points replies of the checkout saga.",
    ),
    ConsumerGroupSpec(
        "order-payment-timeouts",
        ORDER_TIMEOUTS,
        (ORDER_PAYMENT_TIMEOUT,),
        "order",
        "Cancel orders still awaiting payment when their timeout fires.",
    ),
    *(
        ConsumerGroupSpec(
            f"data-all-{topic}",
            topic,
            (ALL_TAGS,),
            "data",
            f"Every event of {topic} into the analytics tables.",
        )
        for topic in (USER_EVENTS, PRODUCT_EVENTS, ORDER_EVENTS, TRADE_EVENTS)
    ),
    ConsumerGroupSpec(
        "data-audit-events",
        AUDIT_EVENTS,
        (AUDIT_RECORDED,),
        "data",
        "Audit entries into the audit log (GET /api/v1/audit).",
    ),
)


def topic_spec(name: str) -> TopicSpec:
    """The declared topic ``name``; KeyError when there is none."""
    for topic in TOPICS:
        if topic.name == name:
            return topic
    raise KeyError(f"no topic {name!r} in the topology")


def consumer_group(name: str) -> ConsumerGroupSpec:
    """The declared consumer group ``name``; KeyError when there is none."""
    for group in CONSUMER_GROUPS:
        if group.name == name:
            return group
    raise KeyError(f"no consumer group {name!r} in the topology")


def groups_of(service: str) -> tuple[ConsumerGroupSpec, ...]:
    """The consumer groups ``service`` runs."""
    return tuple(group for group in CONSUMER_GROUPS if group.service == service)


def topology_document() -> dict[str, list[dict[str, object]]]:
    """Topics and groups as JSON-ready dicts (for set-up scripts)."""
    return {
        "topics": [
            {
                "name": t.name,
                "kind": t.kind.value,
                "owner": t.owner,
                "description": t.description,
            }
            for t in TOPICS
        ],
        "consumer_groups": [
            {
                "name": g.name,
                "topic": g.topic,
                "tags": list(g.tags),
                "service": g.service,
                "description": g.description,
            }
            for g in CONSUMER_GROUPS
        ],
    }


if __name__ == "__main__":
    print(json.dumps(topology_document(), indent=2))
