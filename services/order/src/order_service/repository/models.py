"""SQLAlchemy models of the order service: cart lines, orders and their lines; and the
outbox, inbox and dead-letter tables of meshmart_common.messaging."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from meshmart_common.db import UTCDateTime, naming_metadata, utc_now
from meshmart_common.messaging.models import DeadLetterMixin, InboxMixin, OutboxMixin

ORDER_STATUSES = (
    "PENDING",
    "AWAITING_PAYMENT",
    "PAID",
    "SHIPPED",
    "COMPLETED",
    "REJECTED",
    "CANCELLED",
)
"""Every value of orders.status (the rules live in domain/order_status.py)."""


# Idempotency keys are opaque and case-sensitive; the default MySQL collation
# (utf8mb4_unicode_ci) would make "abc" and "ABC" the same key.
IdempotencyKeyType = String(128).with_variant(
    mysql.VARCHAR(128, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
)


class Base(DeclarativeBase):
    """Declarative base of the order service (its own metadata and migrations)."""

    metadata = naming_metadata()


class CartItem(Base):
    """One product in a customer's cart, with the title and price last seen for it.

    The live title and price come from the product service at read time; the
    stored ones are only shown (marked stale) while product cannot be reached.
    """

    __tablename__ = "cart_items"
    __table_args__ = (
        UniqueConstraint("user_id", "product_id"),
        CheckConstraint("quantity >= 1", name="quantity_positive"),
        CheckConstraint("unit_price_cents >= 0", name="unit_price_not_negative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer)
    product_id: Mapped[int] = mapped_column(Integer)
    quantity: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    unit_price_cents: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)


class Order(Base):
    """A checked-out cart moving through the saga and the payment.

    ``stock_ok`` and ``trade_ok`` record the saga replies that came in while
    the order was PENDING; both true moves it to AWAITING_PAYMENT.
    """

    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key"),
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in ORDER_STATUSES) + ")",
            name="status_known",
        ),
        CheckConstraint(
            "subtotal_cents >= 0 AND discount_cents >= 0 AND points_discount_cents >= 0"
            " AND total_cents >= 0 AND points_redeemed >= 0",
            name="amounts_not_negative",
        ),
        CheckConstraint(
            "total_cents = subtotal_cents - discount_cents - points_discount_cents",
            name="total_adds_up",
        ),
        Index("ix_orders_user_id_created_at", "user_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(24), index=True)
    currency: Mapped[str] = mapped_column(String(3))
    subtotal_cents: Mapped[int] = mapped_column(BigInteger)
    discount_cents: Mapped[int] = mapped_column(BigInteger)
    points_redeemed: Mapped[int] = mapped_column(BigInteger)
    points_discount_cents: Mapped[int] = mapped_column(BigInteger)
    total_cents: Mapped[int] = mapped_column(BigInteger)
    coupon_code: Mapped[str | None] = mapped_column(String(64))
    # An address of the user service, stored as given: order cannot check
    # across services that it belongs to the customer (see the README).
    address_id: Mapped[int | None] = mapped_column(Integer)
    idempotency_key: Mapped[str | None] = mapped_column(IdempotencyKeyType)
    request_hash: Mapped[str | None] = mapped_column(String(64))
    stock_ok: Mapped[bool] = mapped_column(Boolean, default=False)
    trade_ok: Mapped[bool] = mapped_column(Boolean, default=False)
    rejection_reason: Mapped[str | None] = mapped_column(String(255))
    cancellation_reason: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    pay_by: Mapped[datetime | None] = mapped_column(UTCDateTime())
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    shipped_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    lines: Mapped[list[OrderLine]] = relationship(
        lazy="selectin",
        order_by="OrderLine.id",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class OrderLine(Base):
    """One product of an order at the price it was sold for."""

    __tablename__ = "order_lines"
    __table_args__ = (
        UniqueConstraint("order_id", "product_id"),
        CheckConstraint("quantity >= 1", name="quantity_positive"),
        CheckConstraint("unit_price_cents >= 0", name="unit_price_not_negative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    product_id: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200))
    unit_price_cents: Mapped[int] = mapped_column(Integer)
    quantity: Mapped[int] = mapped_column(Integer)
    line_total_cents: Mapped[int] = mapped_column(BigInteger)


# --- messaging: the tables of meshmart_common.messaging (docs/messaging.md) ----------


class OutboxEvent(OutboxMixin, Base):
    """Events written with the change they describe; the relay publishes them after commit."""


class InboxEvent(InboxMixin, Base):
    """Saga replies and timeouts already handled, per consumer group (redeliveries are no-ops)."""


class DeadLetter(DeadLetterMixin, Base):
    """Events whose handler keeps failing: retrying, or parked for an operator."""
