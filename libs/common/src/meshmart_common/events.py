"""The event contracts: every domain event's type, topic and payload schema.

Services never import each other, but a consumer must read the producer's
payload; so the payload schemas live here, in one catalogue. The producer
owns the meaning (its service docs describe when it emits what); changing a
payload is a contract change and needs every consumer's tests to pass.

Payloads carry ids and numbers, never HTTP or ORM objects. Money is integer
cents. Times are timezone-aware UTC.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from meshmart_common.messaging.envelope import EventPayload
from meshmart_common.messaging.topology import (
    AUDIT_EVENTS,
    ORDER_EVENTS,
    ORDER_TIMEOUTS,
    PRODUCT_EVENTS,
    TRADE_EVENTS,
    USER_EVENTS,
)


class EventData(EventPayload):
    """Base of every payload: its event type, its topic, and which field is the aggregate id."""

    key_field: ClassVar[str]

    def aggregate_key(self) -> str:
        """The message key: the aggregate id as a string."""
        return str(getattr(self, self.key_field))


class OrderLine(BaseModel):
    """One line of an order as the saga sees it."""

    model_config = ConfigDict(frozen=True)

    product_id: int
    quantity: int = Field(ge=1)
    unit_price_cents: int = Field(ge=0)


# --- user ---------------------------------------------------------------------


class UserRegistered(EventData):
    """A customer account was created."""

    event_type = "user.registered"
    topic = USER_EVENTS
    key_field = "user_id"

    user_id: int
    email: str
    registered_at: datetime


# --- product -------------------------------------------------------------------


class ProductChanged(EventData):
    """Base of product.created / product.updated."""

    topic = PRODUCT_EVENTS
    key_field = "product_id"

    product_id: int
    sku: str
    title: str
    price_cents: int
    category_id: int
    deleted: bool = False


class ProductCreated(ProductChanged):
    """An admin added a product."""

    event_type = "product.created"


class ProductUpdated(ProductChanged):
    """An admin changed or soft-deleted a product."""

    event_type = "product.updated"


class StockChanged(EventData):
    """Stock counters of a product changed (admin update, reservation, release, commit)."""

    event_type = "stock.changed"
    topic = PRODUCT_EVENTS
    key_field = "product_id"

    product_id: int
    on_hand: int
    reserved: int
    reason: str


class StockReserved(EventData):
    """Saga reply: every line of the order is reserved."""

    event_type = "stock.reserved"
    topic = PRODUCT_EVENTS
    key_field = "order_id"

    order_id: int


class StockRejected(EventData):
    """Saga reply: at least one line could not be reserved; nothing is held."""

    event_type = "stock.rejected"
    topic = PRODUCT_EVENTS
    key_field = "order_id"

    order_id: int
    reason: str
    product_ids: list[int] = Field(default_factory=list)


# --- order ---------------------------------------------------------------------


class OrderCreated(EventData):
    """Checkout stored a PENDING order; product and trade now hold what it needs."""

    event_type = "order.created"
    topic = ORDER_EVENTS
    key_field = "order_id"

    order_id: int
    user_id: int
    lines: list[OrderLine]
    subtotal_cents: int
    discount_cents: int
    points_to_redeem: int
    total_cents: int
    coupon_code: str | None = None
    created_at: datetime


class OrderRejected(EventData):
    """The saga failed (stock or trade said no); holders release what they hold."""

    event_type = "order.rejected"
    topic = ORDER_EVENTS
    key_field = "order_id"

    order_id: int
    user_id: int
    reason: str


class OrderAwaitingPayment(EventData):
    """Stock and trade are both held; the customer can pay until ``pay_by``."""

    event_type = "order.awaiting_payment"
    topic = ORDER_EVENTS
    key_field = "order_id"

    order_id: int
    user_id: int
    total_cents: int
    pay_by: datetime


class OrderPaymentTimeout(EventData):
    """Delayed message: if the order still awaits payment, cancel it."""

    event_type = "order.payment_timeout"
    topic = ORDER_TIMEOUTS
    key_field = "order_id"

    order_id: int


class OrderPaid(EventData):
    """Payment succeeded: stock is committed, the coupon consumed, points awarded."""

    event_type = "order.paid"
    topic = ORDER_EVENTS
    key_field = "order_id"

    order_id: int
    user_id: int
    lines: list[OrderLine]
    total_cents: int
    discount_cents: int
    points_redeemed: int
    coupon_code: str | None = None
    paid_at: datetime


class OrderCancelled(EventData):
    """Cancelled by the customer or by the payment timeout; holders release and refund."""

    event_type = "order.cancelled"
    topic = ORDER_EVENTS
    key_field = "order_id"

    order_id: int
    user_id: int
    reason: str
    cancelled_at: datetime


class OrderShipped(EventData):
    """An admin shipped the order."""

    event_type = "order.shipped"
    topic = ORDER_EVENTS
    key_field = "order_id"

    order_id: int
    user_id: int


class OrderCompleted(EventData):
    """An admin completed the order."""

    event_type = "order.completed"
    topic = ORDER_EVENTS
    key_field = "order_id"

    order_id: int
    user_id: int


# --- trade ---------------------------------------------------------------------


class TradeLocked(EventData):
    """Saga reply: the coupon (if any) and the points are locked for the order."""

    event_type = "trade.locked"
    topic = TRADE_EVENTS
    key_field = "order_id"

    order_id: int
    coupon_code: str | None = None
    discount_cents: int
    points_locked: int


class TradeRejected(EventData):
    """Saga reply: the coupon or the points could not be locked; nothing is held."""

    event_type = "trade.rejected"
    topic = TRADE_EVENTS
    key_field = "order_id"

    order_id: int
    reason: str


class PointsChanged(EventData):
    """A user's points balance moved (earned, redeemed, refunded)."""

    event_type = "points.changed"
    topic = TRADE_EVENTS
    key_field = "user_id"

    user_id: int
    delta: int
    balance: int
    reason: str
    order_id: int | None = None


class CouponClaimed(EventData):
    """A user claimed a coupon of a campaign."""

    event_type = "coupon.claimed"
    topic = TRADE_EVENTS
    key_field = "user_id"

    user_id: int
    campaign_id: int
    code: str


# --- audit (every service) -----------------------------------------------------


class AuditOutcome(StrEnum):
    """How an audited action ended."""

    SUCCESS = "success"
    FAILURE = "failure"


class AuditAction(StrEnum):
    """The actions the services record, the vocabulary of ``AuditRecorded.action``.

    ``auth.*`` is sign-in and credentials, ``admin.*`` an admin's changes, so
    the audit list filtered by ``action=admin.`` shows every admin change.

    ``AuditRecorded.action`` is a plain string of this shape, not this enum, so a
    service may record a new action before the data service is updated.
    """

    LOGIN_SUCCEEDED = "auth.login.succeeded"
    LOGIN_FAILED = "auth.login.failed"
    PASSWORD_CHANGED = "auth.password.changed"  # noqa: S105 - an action name
    PASSWORD_CHANGE_FAILED = "auth.password.change_failed"  # noqa: S105 - an action name
    REFRESH_TOKEN_REUSED = "auth.refresh_token.reused"  # noqa: S105 - an action name
    CATEGORY_CREATED = "admin.category.created"
    PRODUCT_CREATED = "admin.product.created"
    PRODUCT_UPDATED = "admin.product.updated"
    PRODUCT_DELETED = "admin.product.deleted"
    STOCK_ADJUSTED = "admin.stock.adjusted"
    CAMPAIGN_CREATED = "admin.campaign.created"
    POINTS_GRANTED = "admin.points.granted"
    ORDER_SHIPPED = "admin.order.shipped"
    ORDER_COMPLETED = "admin.order.completed"
    ORDER_CANCELLED = "admin.order.cancelled"


AUDIT_ACTION_PATTERN = r"^[a-z][a-z_]*(\.[a-z][a-z_]*){1,4}$"
"""Dotted lower-case words, e.g. ``auth.login.failed``."""
AUDIT_ACTION_MAX_LENGTH = 64
AUDIT_EMAIL_MAX_LENGTH = 254
AUDIT_DETAILS_MAX_ITEMS = 16
AUDIT_DETAIL_MAX_LENGTH = 200

AuditDetailKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]
AuditDetailValue = (
    Annotated[str, StringConstraints(max_length=AUDIT_DETAIL_MAX_LENGTH)] | int | bool | None
)


class AuditRecorded(EventData):
    """A security-relevant action happened (or was refused): one entry of the audit log.

    Who (``actor_*``: the account, or for a failed login only the email that
    was tried), did what (``action``, the ``target``), how it ended
    (``outcome``), where (``service``, ``request_id``, ``client_ip``), plus a
    few bounded ``details``. Never a password, a token or a hash. Published
    through the acting service's outbox in the action's own transaction.
    """

    event_type = "audit.recorded"
    topic = AUDIT_EVENTS
    key_field = "target_id"

    occurred_at: datetime
    service: str = Field(min_length=1, max_length=32)
    action: str = Field(max_length=AUDIT_ACTION_MAX_LENGTH, pattern=AUDIT_ACTION_PATTERN)
    outcome: AuditOutcome
    actor_id: int | None = None
    actor_email: str | None = Field(default=None, max_length=AUDIT_EMAIL_MAX_LENGTH)
    actor_role: str | None = Field(default=None, max_length=16)
    target_type: str | None = Field(default=None, max_length=32)
    target_id: str | None = Field(default=None, max_length=128)
    request_id: str | None = Field(default=None, max_length=128)
    client_ip: str | None = Field(default=None, max_length=64)
    details: dict[AuditDetailKey, AuditDetailValue] = Field(
        default_factory=dict, max_length=AUDIT_DETAILS_MAX_ITEMS
    )

    def aggregate_key(self) -> str:
        """The message key: the target (``product:12``), else the actor (``user:7``)."""
        if self.target_type is not None and self.target_id is not None:
            return f"{self.target_type}:{self.target_id}"
        if self.actor_id is not None:
            return f"user:{self.actor_id}"
        return "anonymous"


EVENT_TYPES: dict[str, type[EventData]] = {
    cls.event_type: cls
    for cls in (
        UserRegistered,
        ProductCreated,
        ProductUpdated,
        StockChanged,
        StockReserved,
        StockRejected,
        OrderCreated,
        OrderRejected,
        OrderAwaitingPayment,
        OrderPaymentTimeout,
        OrderPaid,
        OrderCancelled,
        OrderShipped,
        OrderCompleted,
        TradeLocked,
        TradeRejected,
        PointsChanged,
        CouponClaimed,
        AuditRecorded,
    )
}
"""Every event type, for parsing an envelope's data by its ``type``."""
