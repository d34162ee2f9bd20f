"""The audit log: audit.recorded events stored once, listed for admins by actor, action and time."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import func, select

from data_service.events.handlers import CONSUMER_GROUPS, consume, handle_event
from data_service.repository.models import AuditEntry, InboxEvent, RawEvent
from meshmart_common.audit import AuditActor, AuditContext
from meshmart_common.db import Database
from meshmart_common.events import AuditAction, AuditOutcome, AuditRecorded
from meshmart_common.messaging.consumer import AlreadyHandled, IncomingEvent, handle_once
from meshmart_common.messaging.envelope import CloudEvent, outgoing_message
from meshmart_common.messaging.local_bus import LocalBus
from meshmart_common.messaging.testing import eventually
from meshmart_common.messaging.topology import AUDIT_EVENTS
from meshmart_common.testing import assert_problem

AUDIT = "/api/v1/audit"
T0 = datetime(2026, 6, 1, 8, tzinfo=UTC)
ADMIN = AuditActor(user_id=1, email="admin@meshmart.local", role="admin")
ADA = AuditActor(user_id=42, email="ada@example.com", role="customer")
IngestEvent = Callable[..., Awaitable[bool]]


def entry(
    action: str,
    *,
    minutes: int,
    actor: AuditActor | None = None,
    service: str = "user",
    outcome: AuditOutcome = AuditOutcome.SUCCESS,
    target: tuple[str, str | int] | None = None,
    details: dict[str, str | int | bool | None] | None = None,
) -> AuditRecorded:
    context = AuditContext(service=service, request_id=f"req-{minutes}", client_ip="192.0.2.1")
    if actor is not None:
        context = context.by(actor)
    return context.entry(
        action,
        outcome=outcome,
        target_type=target[0] if target else None,
        target_id=target[1] if target else None,
        details=details,
        occurred_at=T0 + timedelta(minutes=minutes),
    )


def envelope(data: AuditRecorded, event_id: str | None = None) -> CloudEvent:
    return data.to_event(
        source=f"/meshmart/{data.service}",
        subject=data.aggregate_key(),
        event_id=event_id,
        time=data.occurred_at,
    )


AUDIT_GROUP = next(group for group in CONSUMER_GROUPS if group.topic == AUDIT_EVENTS)


def received(event: CloudEvent) -> IncomingEvent:
    """``event`` as the data-audit-events runner hands it over (a new message each time)."""
    return IncomingEvent(
        envelope=event,
        consumer_group=AUDIT_GROUP.name,
        topic=AUDIT_EVENTS,
        message_id=f"msg-{uuid.uuid4().hex}",
        key=event.subject or event.id,
    )


async def count(database: Database, model: type[Any]) -> int:
    async with database.session(read_only=True) as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


# --- consuming ----------------------------------------------------------------------


async def test_an_audit_event_is_stored_once_however_often_it_is_delivered(
    database: Database,
) -> None:
    failed = entry(
        AuditAction.LOGIN_FAILED,
        minutes=5,
        actor=AuditActor(user_id=None, email="Mallory@Example.com"),
        outcome=AuditOutcome.FAILURE,
        details={"reason": "unknown_account"},
    )
    event = envelope(failed, event_id="evt-audit-1")

    await handle_once(database, InboxEvent, consume, received(event))
    with pytest.raises(AlreadyHandled):
        await handle_once(database, InboxEvent, consume, received(event))
    # Past the inbox too (a replayed dead letter, another group): still one entry.
    async with database.session() as session:
        await handle_event(session, event)

    async with database.session(read_only=True) as session:
        stored = (await session.scalars(select(AuditEntry))).one()
    assert await count(database, RawEvent) == 1
    assert stored.event_id == "evt-audit-1"
    assert stored.occurred_at == T0 + timedelta(minutes=5)
    assert (stored.service, stored.action, stored.outcome) == (
        "user",
        "auth.login.failed",
        "failure",
    )
    # No account: the email that was tried, lower-cased so the filter finds any case.
    assert (stored.actor_id, stored.actor_email, stored.actor_role) == (
        None,
        "mallory@example.com",
        None,
    )
    assert (stored.request_id, stored.client_ip) == ("req-5", "192.0.2.1")
    assert stored.details == {"reason": "unknown_account"}


async def test_the_app_consumes_audit_events_from_the_bus(
    app: FastAPI, client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    producer = LocalBus(app.state.settings.local_bus_path)
    await producer.start()
    try:
        login = entry(
            AuditAction.LOGIN_SUCCEEDED, minutes=1, actor=ADA, target=("user", ADA.user_id or 0)
        )
        event = envelope(login)
        await producer.publish(outgoing_message(event, login.topic))
        await producer.publish(outgoing_message(event, login.topic))  # a redelivery
        marker = envelope(entry(AuditAction.LOGIN_SUCCEEDED, minutes=2, actor=ADMIN))
        await producer.publish(outgoing_message(marker, AUDIT_EVENTS))

        async def listed() -> list[dict[str, Any]]:
            response = await client.get(AUDIT, headers=admin_headers)
            assert response.status_code == 200, response.text
            items: list[dict[str, Any]] = response.json()["items"]
            return items if len(items) == 2 else []

        items = await eventually(listed, what="both audit entries are listed")
    finally:
        await producer.close()
    assert [item["event_id"] for item in items] == [marker.id, event.id]


# --- listing --------------------------------------------------------------------------


@pytest.fixture
async def audit_history(ingest_event: IngestEvent) -> list[AuditRecorded]:
    """Eight entries a minute apart from T0 (oldest first), through the real ingest.

    0 ada logs in; 1 someone tries mallory@example.com (no account); 2 ada's
    wrong password; 3 the admin creates product 7; 4 adjusts its stock; 5 ada
    changes her password; 6 the admin ships order 9; 7 ada's refresh token is
    reused.
    """
    entries = [
        entry(AuditAction.LOGIN_SUCCEEDED, minutes=0, actor=ADA, target=("user", 42)),
        entry(
            AuditAction.LOGIN_FAILED,
            minutes=1,
            actor=AuditActor(user_id=None, email="mallory@example.com"),
            outcome=AuditOutcome.FAILURE,
            details={"reason": "unknown_account"},
        ),
        entry(
            AuditAction.LOGIN_FAILED,
            minutes=2,
            actor=ADA,
            outcome=AuditOutcome.FAILURE,
            target=("user", 42),
            details={"reason": "wrong_password", "failed_attempts": 1},
        ),
        entry(
            AuditAction.PRODUCT_CREATED,
            minutes=3,
            actor=ADMIN,
            service="product",
            target=("product", 7),
            details={"sku": "KT-1", "price_cents": 2999},
        ),
        entry(
            AuditAction.STOCK_ADJUSTED,
            minutes=4,
            actor=ADMIN,
            service="product",
            target=("product", 7),
        ),
        entry(AuditAction.PASSWORD_CHANGED, minutes=5, actor=ADA, target=("user", 42)),
        entry(
            AuditAction.ORDER_SHIPPED, minutes=6, actor=ADMIN, service="order", target=("order", 9)
        ),
        entry(
            AuditAction.REFRESH_TOKEN_REUSED,
            minutes=7,
            actor=ADA,
            outcome=AuditOutcome.FAILURE,
            target=("user", 42),
        ),
    ]
    for data in entries:
        await ingest_event(data, at=data.occurred_at)
    return entries


async def listing(client: AsyncClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = await client.get(AUDIT, params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def minutes_of(body: dict[str, Any]) -> list[int]:
    """The entries by their minute after T0 (each entry's request id is req-<minute>)."""
    return [int(item["request_id"].removeprefix("req-")) for item in body["items"]]


@pytest.mark.usefixtures("audit_history")
async def test_the_list_is_newest_first_with_every_field(
    client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    body = await listing(client, admin_headers)
    assert (body["total"], body["page"], body["page_size"]) == (8, 1, 20)
    assert minutes_of(body) == [7, 6, 5, 4, 3, 2, 1, 0]
    created = body["items"][4]
    assert {k: v for k, v in created.items() if k not in {"id", "event_id"}} == {
        "occurred_at": "2026-06-01T08:03:00Z",
        "service": "product",
        "action": "admin.product.created",
        "outcome": "success",
        "actor_id": 1,
        "actor_email": "admin@meshmart.local",
        "actor_role": "admin",
        "target_type": "product",
        "target_id": "7",
        "request_id": "req-3",
        "client_ip": "192.0.2.1",
        "details": {"sku": "KT-1", "price_cents": 2999},
    }


@pytest.mark.usefixtures("audit_history")
@pytest.mark.parametrize(
    ("params", "minutes"),
    [
        ({"actor": "42"}, [7, 5, 2, 0]),
        ({"actor": "ADA@example.com"}, [7, 5, 2, 0]),
        ({"actor": "mallory@example.com"}, [1]),
        ({"actor": "1"}, [6, 4, 3]),
        ({"actor": "999"}, []),
        ({"action": "auth.login.failed"}, [2, 1]),
        ({"action": "auth."}, [7, 5, 2, 1, 0]),
        ({"action": "admin."}, [6, 4, 3]),
        ({"action": "admin.product."}, [3]),
        ({"action": "auth"}, []),  # exact: no action is just "auth"
        ({"outcome": "failure"}, [7, 2, 1]),
        ({"actor": "42", "action": "auth.login.", "outcome": "failure"}, [2]),
        ({"from": "2026-06-01T08:02:00Z"}, [7, 6, 5, 4, 3, 2]),
        ({"to": "2026-06-01T08:02:00Z"}, [1, 0]),
        ({"from": "2026-06-01T10:02:00+02:00", "to": "2026-06-01T08:04:00Z"}, [3, 2]),
        ({"from": "2026-06-01T08:03:00Z", "to": "2026-06-01T08:03:00Z"}, []),
        ({"from": "2026-06-01", "to": "2026-06-02"}, [7, 6, 5, 4, 3, 2, 1, 0]),
    ],
)
async def test_filters_by_actor_action_outcome_and_time(
    client: AsyncClient, admin_headers: dict[str, str], params: dict[str, str], minutes: list[int]
) -> None:
    body = await listing(client, admin_headers, **params)
    assert minutes_of(body) == minutes
    assert body["total"] == len(minutes)


async def test_an_action_prefix_is_literal_text_not_a_like_pattern(
    client: AsyncClient, admin_headers: dict[str, str], ingest_event: IngestEvent
) -> None:
    for minute, action in enumerate(("auth.refresh_token.reused", "auth.refreshxtoken.reused")):
        data = entry(action, minutes=minute, actor=ADA)
        await ingest_event(data, at=data.occurred_at)
    body = await listing(client, admin_headers, action="auth.refresh_token.")
    assert [item["action"] for item in body["items"]] == ["auth.refresh_token.reused"]


@pytest.mark.usefixtures("audit_history")
async def test_pages_follow_the_shared_pagination(
    client: AsyncClient, admin_headers: dict[str, str]
) -> None:
    pages = [await listing(client, admin_headers, page=n, page_size=3) for n in (1, 2, 3, 4)]
    assert [minutes_of(page) for page in pages] == [[7, 6, 5], [4, 3, 2], [1, 0], []]
    assert {page["total"] for page in pages} == {8}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-06-02T00:00:00Z", "to": "2026-06-01T00:00:00Z"}, "to"),
        ({"from": "yesterday"}, "from"),
        ({"to": "2026-13-01"}, "to"),
        ({"action": "AUTH.login"}, "action"),
        ({"action": "auth.%"}, "action"),
        ({"action": "a" * 65}, "action"),
        ({"actor": ""}, "actor"),
        ({"actor": "x" * 255}, "actor"),
        ({"actor": "99999999999999999999"}, "actor"),
        ({"outcome": "maybe"}, "outcome"),
        ({"page_size": "0"}, "page_size"),
        ({"page_size": "101"}, "page_size"),
    ],
)
async def test_bad_filters_are_422_with_the_field_named(
    client: AsyncClient, admin_headers: dict[str, str], params: dict[str, str], field: str
) -> None:
    response = await client.get(AUDIT, params=params, headers=admin_headers)
    assert_problem(response, 422, field=field)


async def test_only_admins_read_the_audit_log(
    client: AsyncClient, customer_headers: dict[str, str]
) -> None:
    assert_problem(await client.get(AUDIT), 401)
    assert_problem(await client.get(AUDIT, headers=customer_headers), 403)
    assert_problem(await client.get(AUDIT, params={"actor": "1001"}, headers=customer_headers), 403)
