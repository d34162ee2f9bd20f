"""An admin's ship, complete and cancel of an order leave an audit entry with the change."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient

from meshmart_common.events import AuditRecorded
from meshmart_common.testing import assert_problem
from services.order.tests.events import OutboxReader, SagaDelivery
from services.order.tests.shop import Shop, act, held

ORDERS = "/api/v1/orders"


def summary(entry: AuditRecorded) -> tuple[Any, ...]:
    return (entry.action, entry.target_type, entry.target_id, entry.actor_id, entry.details)


async def test_shipping_and_completing_are_audited(
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    admin_headers: dict[str, str],
    deliver: SagaDelivery,
    outbox: OutboxReader,
) -> None:
    order = await shop.order(customer_headers)
    await held(deliver, order)
    assert (await act(api, "pay", order, customer_headers)).status_code == 200

    shipped = await api.post(
        f"{ORDERS}/{order['id']}/ship", headers={**admin_headers, "X-Request-ID": "rq-ship"}
    )
    assert shipped.status_code == 200, shipped.text
    assert (await act(api, "complete", order, admin_headers)).status_code == 200

    entries = await outbox.of_type(AuditRecorded)
    oid = str(order["id"])
    assert [summary(entry) for entry in entries] == [
        ("admin.order.shipped", "order", oid, 1, {"user_id": 1001, "status": "SHIPPED"}),
        ("admin.order.completed", "order", oid, 1, {"user_id": 1001, "status": "COMPLETED"}),
    ]
    assert {(e.service, e.actor_role, e.actor_email) for e in entries} == {
        ("order", "admin", "admin@example.com")
    }
    assert entries[0].request_id == "rq-ship"
    rows = [row for row in await outbox.rows() if row.event_type == "audit.recorded"]
    assert {(row.topic, row.message_key) for row in rows} == {("audit-events", f"order:{oid}")}


async def test_an_admin_cancelling_a_customers_order_is_audited_the_customer_is_not(
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    admin_headers: dict[str, str],
    deliver: SagaDelivery,
    outbox: OutboxReader,
) -> None:
    by_customer = await shop.order(customer_headers)
    await held(deliver, by_customer)
    assert (await act(api, "cancel", by_customer, customer_headers)).status_code == 200
    assert await outbox.of_type(AuditRecorded) == []

    by_admin = await shop.order(customer_headers)
    await held(deliver, by_admin)
    assert (await act(api, "cancel", by_admin, admin_headers)).status_code == 200

    [entry] = await outbox.of_type(AuditRecorded)
    assert summary(entry) == (
        "admin.order.cancelled",
        "order",
        str(by_admin["id"]),
        1,
        {"user_id": 1001, "status": "CANCELLED"},
    )


async def test_refused_order_actions_leave_no_audit_entry(
    api: AsyncClient,
    shop: Shop,
    customer_headers: dict[str, str],
    admin_headers: dict[str, str],
    deliver: SagaDelivery,
    outbox: OutboxReader,
) -> None:
    order = await shop.order(customer_headers)
    await held(deliver, order)

    assert_problem(await act(api, "ship", order, admin_headers), 409)  # not paid yet
    assert (await act(api, "pay", order, customer_headers)).status_code == 200
    assert_problem(await act(api, "ship", order, customer_headers), 403)
    assert_problem(await act(api, "complete", order, admin_headers), 409)  # not shipped
    assert_problem(await api.post(f"{ORDERS}/99999/cancel", headers=admin_headers), 404)

    assert await outbox.of_type(AuditRecorded) == []
