"""The consumer-facing handler: envelope in, ingest applied once; the consumer groups."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from data_service.events.handlers import CONSUMER_GROUPS, CONSUMERS, handle_event, parse_data
from data_service.repository.models import RawEvent, UserFact
from meshmart_common.db import Database
from meshmart_common.events import EVENT_TYPES, UserRegistered
from meshmart_common.messaging.topology import (
    AUDIT_EVENTS,
    ORDER_EVENTS,
    ORDER_TIMEOUTS,
    PRODUCT_EVENTS,
    TRADE_EVENTS,
    USER_EVENTS,
)

REGISTERED_AT = datetime(2026, 2, 1, 8, tzinfo=UTC)


@dataclass(frozen=True)
class Envelope:
    """What the consumer runner hands over: a received CloudEvents envelope."""

    id: str
    type: str
    time: datetime | None
    data: Any
    subject: str | None = None


async def test_handle_event_parses_a_json_payload_and_ingests_it_once(
    database: Database,
) -> None:
    envelope = Envelope(
        id="evt-user-7",
        type="user.registered",
        time=REGISTERED_AT,
        data={"user_id": 7, "email": "x@example.com", "registered_at": REGISTERED_AT.isoformat()},
    )
    for _ in range(2):
        async with database.session() as session:
            await handle_event(session, envelope)
    async with database.session(read_only=True) as session:
        user = await session.get(UserFact, 7)
        events = await session.scalar(select(func.count()).select_from(RawEvent))
    assert user is not None
    assert user.registered_at == REGISTERED_AT
    assert events == 1


async def test_handle_event_takes_a_parsed_payload_and_a_missing_time(
    database: Database,
) -> None:
    data = UserRegistered(user_id=8, email="y@example.com", registered_at=REGISTERED_AT)
    before = datetime.now(UTC)
    async with database.session() as session:
        await handle_event(
            session, Envelope(id="e-8", type="user.registered", time=None, data=data)
        )
    async with database.session(read_only=True) as session:
        row = (await session.scalars(select(RawEvent))).one()
    assert row.event_type == "user.registered"
    assert row.occurred_at >= before


@pytest.mark.parametrize(
    ("event_type", "data", "message"),
    [
        ("user.deleted", {}, "unknown event type"),
        ("user.registered", {"user_id": "seven"}, "validation error"),
        ("user.registered", ["not", "an", "object"], "JSON object"),
    ],
)
def test_parse_data_refuses_unknown_types_and_invalid_payloads(
    event_type: str, data: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        parse_data(event_type, data)


def test_the_groups_read_every_tag_of_every_topic_with_domain_events() -> None:
    assert [group.name for group in CONSUMER_GROUPS] == [
        "data-all-user-events",
        "data-all-product-events",
        "data-all-order-events",
        "data-all-trade-events",
        "data-audit-events",
    ]
    assert {group.topic for group in CONSUMER_GROUPS} == {
        USER_EVENTS,
        PRODUCT_EVENTS,
        ORDER_EVENTS,
        TRADE_EVENTS,
        AUDIT_EVENTS,
    }
    assert all(group.service == "data" for group in CONSUMER_GROUPS)
    assert all(group.tags == ("*",) for group in CONSUMER_GROUPS[:4])
    assert CONSUMER_GROUPS[4].tags == ("audit.recorded",)
    read = {group.topic for group in CONSUMER_GROUPS}
    domain_events = {name for name, model in EVENT_TYPES.items() if model.topic != ORDER_TIMEOUTS}
    assert {name for name in domain_events if EVENT_TYPES[name].topic in read} == domain_events
    assert [spec.group for spec in CONSUMERS] == list(CONSUMER_GROUPS)
