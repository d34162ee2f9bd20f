"""An admin's new campaign and point grants leave an audit entry, committed with the change."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from httpx import AsyncClient

from meshmart_common.db import Database
from meshmart_common.events import AuditRecorded
from meshmart_common.messaging.envelope import CloudEvent
from meshmart_common.testing import assert_problem, audit_entries, outbox_rows
from trade_service.repository.models import OutboxEvent

Factory = Callable[..., Awaitable[dict[str, Any]]]


async def test_creating_a_campaign_is_audited(create_campaign: Factory, database: Database) -> None:
    campaign = await create_campaign(
        code="SPRING-5", discount_type="fixed", discount_value=500, total_quantity=40
    )

    [row] = await outbox_rows(database, OutboxEvent, AuditRecorded.event_type)
    assert (row.topic, row.message_key) == ("audit-events", f"campaign:{campaign['id']}")
    assert CloudEvent.from_json(row.body).source == "/meshmart/trade"
    [entry] = await audit_entries(database, OutboxEvent)
    assert entry.model_dump(mode="json", exclude={"occurred_at", "request_id", "client_ip"}) == {
        "service": "trade",
        "action": "admin.campaign.created",
        "outcome": "success",
        "actor_id": 1,
        "actor_email": "admin@example.com",
        "actor_role": "admin",
        "target_type": "campaign",
        "target_id": str(campaign["id"]),
        "details": {
            "code": "SPRING-5",
            "discount_type": "fixed",
            "discount_value": 500,
            "total_quantity": 40,
        },
    }
    assert entry.request_id


async def test_granting_points_is_audited_with_the_grant(
    client: AsyncClient, admin_headers: dict[str, str], database: Database
) -> None:
    response = await client.post(
        "/api/v1/points/grants",
        json={"user_id": 42, "points": 300, "reason": "goodwill"},
        headers={**admin_headers, "X-Request-ID": "rq-grant"},
    )
    assert response.status_code == 201, response.text

    [entry] = await audit_entries(database, OutboxEvent)
    assert (entry.action, entry.target_type, entry.target_id, entry.actor_id) == (
        "admin.points.granted",
        "user",
        "42",
        1,
    )
    assert entry.details == {"points": 300, "note": "goodwill"}
    assert entry.request_id == "rq-grant"


async def test_refused_admin_actions_leave_no_audit_entry(
    client: AsyncClient,
    create_campaign: Factory,
    admin_headers: dict[str, str],
    customer_headers: dict[str, str],
    database: Database,
) -> None:
    campaign = await create_campaign(code="ONLY-ONCE")
    again = {
        "code": "ONLY-ONCE",
        "name": "Again",
        "discount_type": "percent",
        "discount_value": 10,
        "total_quantity": 5,
        "per_user_limit": 1,
        "starts_at": campaign["starts_at"],
        "ends_at": campaign["ends_at"],
    }
    taken = await client.post("/api/v1/coupon-campaigns", json=again, headers=admin_headers)
    assert_problem(taken, 409)
    by_customer = await client.post(
        "/api/v1/points/grants", json={"user_id": 1001, "points": 10}, headers=customer_headers
    )
    assert_problem(by_customer, 403)
    invalid = await client.post(
        "/api/v1/points/grants", json={"user_id": 1001, "points": 0}, headers=admin_headers
    )
    assert_problem(invalid, 422)

    assert [entry.action for entry in await audit_entries(database, OutboxEvent)] == [
        "admin.campaign.created"
    ]
