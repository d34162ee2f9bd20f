"""Routes /api/v1/orders: checkout, the caller's orders, payment and the admin steps."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Response, status

from meshmart_common.audit import AuditContext, CallerAuditDep
from meshmart_common.errors import problem_responses
from meshmart_common.events import AuditAction
from meshmart_common.pagination import PageDep
from meshmart_common.ratelimit import authenticated_user, rate_limited
from order_service.api.deps import (
    ActorDep,
    CheckoutDep,
    OrderId,
    OrdersDep,
    OrdersReadDep,
    OutboxDep,
    problems,
)
from order_service.api.schemas import MAX_ID, VISIBLE_ASCII, OrderCreate, OrderPage, OrderRead
from order_service.domain.checkout import CheckoutRequest
from order_service.domain.order_status import OrderStatus
from order_service.domain.orders import CANCELLED_BY_ADMIN, OrderOutcome
from order_service.domain.outbox_port import OutgoingEvent

router = APIRouter(prefix="/orders", tags=["orders"])

checkout_rate_limit = rate_limited(
    "checkout", "rate_limit_checkout_per_minute", key=authenticated_user
)
"""Checkouts per user (RATE_LIMIT_CHECKOUT_PER_MINUTE, live); runs after authentication."""

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=128,
        pattern=VISIBLE_ASCII,
        description=(
            "1-128 visible ASCII characters. A retry with the same key returns the "
            "order the first request made (200) instead of a second one; the same key "
            "with a different body is a 422."
        ),
    ),
]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=OrderRead,
    dependencies=[Depends(checkout_rate_limit)],
    responses={
        200: {"model": OrderRead, "description": "A retry: the order made with this key"},
        **problems(401, 409, 422, 502, 503, 504),
        **problem_responses(
            429, descriptions={429: "Too many checkouts by this user; see Retry-After"}
        ),
    },
)
async def place_order(
    actor: ActorDep,
    checkout: CheckoutDep,
    outbox: OutboxDep,
    response: Response,
    body: OrderCreate | None = None,
    idempotency_key: IdempotencyKey = None,
) -> OrderRead:
    """Check out the cart: a PENDING order at current prices and the trade quote (201)."""
    options = body or OrderCreate()
    result = await checkout.place_order(
        actor.user_id,
        CheckoutRequest(
            coupon_code=options.coupon_code,
            points_to_redeem=options.points_to_redeem,
            address_id=options.address_id,
        ),
        idempotency_key=idempotency_key,
    )
    await outbox.emit(result.events)
    response.headers["Location"] = f"/api/v1/orders/{result.order.id}"
    if not result.created:
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
    return OrderRead.of(result.order)


@router.get("", response_model=OrderPage, responses=problems(401, 403, 422))
async def list_orders(
    actor: ActorDep,
    orders: OrdersReadDep,
    page: PageDep,
    user_id: Annotated[
        int | None,
        Query(ge=1, le=MAX_ID, description="admins: only this user's orders"),
    ] = None,
    order_status: Annotated[
        OrderStatus | None, Query(alias="status", description="only orders in this status")
    ] = None,
) -> OrderPage:
    """List the caller's orders newest first (admins: everyone's, or one user's)."""
    items, total = await orders.search(
        actor, user_id=user_id, status=order_status, offset=page.offset, limit=page.page_size
    )
    return OrderPage(
        items=[OrderRead.of(order) for order in items],
        total=total,
        page=page.page,
        page_size=page.page_size,
    )


@router.get("/{order_id}", response_model=OrderRead, responses=problems(401, 404, 422))
async def get_order(order_id: OrderId, actor: ActorDep, orders: OrdersReadDep) -> OrderRead:
    """Read one of the caller's orders (admins: any order)."""
    return OrderRead.of(await orders.get(actor, order_id))


async def _done(
    outcome: OrderOutcome,
    outbox: OutboxDep,
    *,
    audit: AuditContext | None = None,
    action: AuditAction | None = None,
) -> OrderRead:
    events = outcome.events
    if audit is not None and action is not None:
        # An admin's step on an order: its audit entry commits with the change.
        entry = audit.entry(
            action,
            target_type="order",
            target_id=outcome.order.id,
            details={"user_id": outcome.order.user_id, "status": outcome.order.status},
        )
        events = [*events, OutgoingEvent(entry)]
    await outbox.emit(events)
    return OrderRead.of(outcome.order)


@router.post(
    "/{order_id}/pay", response_model=OrderRead, responses=problems(401, 403, 404, 409, 422)
)
async def pay_order(
    order_id: OrderId, actor: ActorDep, orders: OrdersDep, outbox: OutboxDep
) -> OrderRead:
    """Pay for an AWAITING_PAYMENT order before pay_by (simulated payment; owner only)."""
    return await _done(await orders.pay(actor, order_id), outbox)


@router.post("/{order_id}/cancel", response_model=OrderRead, responses=problems(401, 404, 409, 422))
async def cancel_order(
    order_id: OrderId, actor: ActorDep, orders: OrdersDep, outbox: OutboxDep, audit: CallerAuditDep
) -> OrderRead:
    """Cancel an AWAITING_PAYMENT order (owner or admin); stock and points are released.

    An admin cancelling another user's order is audited (admin.order.cancelled).
    """
    outcome = await orders.cancel(actor, order_id)
    by_admin = outcome.order.cancellation_reason == CANCELLED_BY_ADMIN
    return await _done(
        outcome, outbox, audit=audit, action=AuditAction.ORDER_CANCELLED if by_admin else None
    )


@router.post(
    "/{order_id}/ship", response_model=OrderRead, responses=problems(401, 403, 404, 409, 422)
)
async def ship_order(
    order_id: OrderId, actor: ActorDep, orders: OrdersDep, outbox: OutboxDep, audit: CallerAuditDep
) -> OrderRead:
    """Mark a PAID order shipped (admin; audited)."""
    outcome = await orders.ship(actor, order_id)
    return await _done(outcome, outbox, audit=audit, action=AuditAction.ORDER_SHIPPED)


@router.post(
    "/{order_id}/complete",
    response_model=OrderRead,
    responses=problems(401, 403, 404, 409, 422),
)
async def complete_order(
    order_id: OrderId, actor: ActorDep, orders: OrdersDep, outbox: OutboxDep, audit: CallerAuditDep
) -> OrderRead:
    """Mark a SHIPPED order completed (admin; audited)."""
    outcome = await orders.complete(actor, order_id)
    return await _done(outcome, outbox, audit=audit, action=AuditAction.ORDER_COMPLETED)
