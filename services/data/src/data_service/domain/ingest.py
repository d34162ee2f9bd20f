"""Ingest: turn one domain event into rows of the analytics tables.

The consumer calls :func:`ingest` inside the transaction that also writes its
inbox row, so each event takes effect once. Ingest is safe to run again on
its own too: the raw ``events`` table is keyed by the event id, and a second
run of the same id writes nothing.

Events arrive in any order (order.paid may come before order.created): an
order row is created by whichever of its events comes first, each event fills
in what it knows, and the status only moves forward (see
:func:`data_service.domain.orders.next_status`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from data_service.domain.audit import record_entry
from data_service.domain.orders import OrderStatus, next_status
from data_service.domain.times import as_utc
from data_service.repository.ingest import IngestRepository, LineRow
from data_service.repository.models import (
    COUPON_LENGTH,
    EVENT_ID_LENGTH,
    EVENT_KEY_LENGTH,
    EVENT_TYPE_LENGTH,
    REASON_LENGTH,
    SKU_LENGTH,
    TITLE_LENGTH,
    OrderFact,
)
from meshmart_common.db import utc_now
from meshmart_common.events import (
    AuditRecorded,
    EventData,
    OrderAwaitingPayment,
    OrderCancelled,
    OrderCompleted,
    OrderCreated,
    OrderLine,
    OrderPaid,
    OrderRejected,
    OrderShipped,
    ProductChanged,
    UserRegistered,
)

MAX_STORED_PAYLOAD_CHARS = 16_384
"""Payloads larger than this (as compact JSON) are stored as a size marker, not in full."""


def _bounded(payload: dict[str, Any]) -> dict[str, Any]:
    size = len(json.dumps(payload, separators=(",", ":")))
    if size > MAX_STORED_PAYLOAD_CHARS:
        return {"truncated": True, "size": size}
    return payload


def stored_payload(data: EventData) -> dict[str, Any]:
    """The payload as it goes into the raw events table, bounded in size."""
    return _bounded(data.model_dump(mode="json"))


def _clip(text: str | None, length: int) -> str | None:
    return None if text is None else text[:length]


async def ingest(
    session: AsyncSession,
    event_type: str,
    event_id: str,
    occurred_at: datetime,
    data: EventData,
) -> bool:
    """Apply one event to the analytics tables; False when this event id was ingested before.

    ``occurred_at`` is the envelope's time (naive values are taken as UTC); it
    dates the facts whose payload carries no time of its own (order.rejected,
    order.shipped, order.completed). Raises ValueError when ``event_type`` is
    not the payload's type or the id is empty or longer than 128 characters:
    a broken envelope belongs in the dead letter queue, not in the reports.
    """
    if event_type != data.event_type:
        raise ValueError(f"event type {event_type!r} does not match its {data.event_type!r} data")
    if not event_id or len(event_id) > EVENT_ID_LENGTH:
        raise ValueError(f"event id must have 1 to {EVENT_ID_LENGTH} characters")
    occurred = as_utc(occurred_at)
    repository = IngestRepository(session)
    recorded = await repository.record_event(
        event_id=event_id,
        event_type=event_type,
        key=data.aggregate_key()[:EVENT_KEY_LENGTH],
        occurred_at=occurred,
        received_at=utc_now(),
        data=stored_payload(data),
    )
    if not recorded:
        return False
    await _apply(repository, event_id, data, occurred)
    await repository.flush()
    return True


async def record_unknown(
    session: AsyncSession,
    event_type: str,
    event_id: str,
    occurred_at: datetime,
    key: str,
    data: Mapping[str, Any],
) -> bool:
    """Keep an event of a type data does not know (yet) in the raw log only.

    A producer may start emitting a new type before this service learns it:
    the event is recorded (type, key, time, the JSON payload, bounded as
    usual) and counts in no report. False when this event id was stored before.
    """
    if not event_id or len(event_id) > EVENT_ID_LENGTH:
        raise ValueError(f"event id must have 1 to {EVENT_ID_LENGTH} characters")
    repository = IngestRepository(session)
    return await repository.record_event(
        event_id=event_id,
        event_type=event_type[:EVENT_TYPE_LENGTH],
        key=key[:EVENT_KEY_LENGTH],
        occurred_at=as_utc(occurred_at),
        received_at=utc_now(),
        data=_bounded(json.loads(json.dumps(dict(data), default=str))),
    )


async def _apply(
    repository: IngestRepository, event_id: str, data: EventData, occurred: datetime
) -> None:
    match data:
        case UserRegistered():
            await repository.add_user(data.user_id, data.registered_at)
        case ProductChanged():
            await repository.save_product(
                data.product_id,
                sku=data.sku[:SKU_LENGTH],
                title=data.title[:TITLE_LENGTH],
                deleted=data.deleted,
                seen_at=occurred,
            )
        case OrderCreated():
            await _order_created(repository, data, occurred)
        case OrderAwaitingPayment():
            order = await _order(repository, data.order_id, OrderStatus.AWAITING_PAYMENT, occurred)
            order.user_id = data.user_id
            order.awaiting_payment_at = occurred
            if order.total_cents is None:
                order.total_cents = data.total_cents
        case OrderPaid():
            await _order_paid(repository, data, occurred)
        case OrderCancelled():
            order = await _order(repository, data.order_id, OrderStatus.CANCELLED, occurred)
            order.user_id = data.user_id
            order.cancelled_at = data.cancelled_at
            order.reason = _clip(data.reason, REASON_LENGTH)
        case OrderRejected():
            order = await _order(repository, data.order_id, OrderStatus.REJECTED, occurred)
            order.user_id = data.user_id
            order.rejected_at = occurred
            order.reason = _clip(data.reason, REASON_LENGTH)
        case OrderShipped():
            order = await _order(repository, data.order_id, OrderStatus.SHIPPED, occurred)
            order.user_id = data.user_id
            order.shipped_at = occurred
        case OrderCompleted():
            order = await _order(repository, data.order_id, OrderStatus.COMPLETED, occurred)
            order.user_id = data.user_id
            order.completed_at = occurred
        case AuditRecorded():
            await record_entry(repository.session, event_id, data)
        case _:
            # Stock, trade, points and coupon events are kept in the raw log only.
            pass


async def _order(
    repository: IngestRepository, order_id: int, reported: OrderStatus, occurred: datetime
) -> OrderFact:
    order = await repository.lock_order(
        order_id, initial_status=OrderStatus.PENDING, seen_at=occurred
    )
    order.status = next_status(OrderStatus(order.status), reported)
    order.last_event_at = max(order.last_event_at, occurred)
    return order


def _line_rows(lines: list[OrderLine]) -> list[LineRow]:
    return [
        LineRow(
            product_id=line.product_id,
            quantity=line.quantity,
            unit_price_cents=line.unit_price_cents,
        )
        for line in lines
    ]


async def _order_created(
    repository: IngestRepository, data: OrderCreated, occurred: datetime
) -> None:
    order = await _order(repository, data.order_id, OrderStatus.PENDING, occurred)
    order.user_id = data.user_id
    order.created_at = data.created_at
    order.subtotal_cents = data.subtotal_cents
    if order.paid_at is None:
        # What was paid is what counts: order.paid's amounts, when it came first, stay.
        order.total_cents = data.total_cents
        order.discount_cents = data.discount_cents
        order.points_redeemed = data.points_to_redeem
        order.coupon_code = _clip(data.coupon_code, COUPON_LENGTH)
    if not await repository.lines_of(data.order_id):
        await repository.replace_lines(data.order_id, _line_rows(data.lines))


async def _order_paid(repository: IngestRepository, data: OrderPaid, occurred: datetime) -> None:
    order = await _order(repository, data.order_id, OrderStatus.PAID, occurred)
    order.user_id = data.user_id
    order.paid_at = data.paid_at
    order.total_cents = data.total_cents
    order.discount_cents = data.discount_cents
    order.points_redeemed = data.points_redeemed
    order.coupon_code = _clip(data.coupon_code, COUPON_LENGTH)
    # The paid lines are what was sold; they replace the lines order.created gave.
    await repository.replace_lines(data.order_id, _line_rows(data.lines))
