"""SQLAlchemy models of the data service: the analytics tables fed by domain events.

Every analytics table is a projection of events, written by the ingest handler
and read by the stats and report endpoints; the consumers' inbox and dead
letters (meshmart_common.messaging) live here too. Ids are the producers' ids (no foreign keys
to other services' databases, which this service cannot see).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from meshmart_common.db import UTCDateTime, naming_metadata
from meshmart_common.events import (
    AUDIT_ACTION_MAX_LENGTH,
    AUDIT_EMAIL_MAX_LENGTH,
)
from meshmart_common.messaging.models import DeadLetterMixin, InboxMixin

# Written in UTC, read back timezone-aware UTC. DATETIME(6) on MySQL/MariaDB, as
# migration 0002 created it: a plain DATETIME drops the fraction of a second.
Timestamp = UTCDateTime(precision=6)

EVENT_ID_LENGTH = 128
EVENT_TYPE_LENGTH = 64
EVENT_KEY_LENGTH = 128
TITLE_LENGTH = 200
SKU_LENGTH = 64
STATUS_LENGTH = 20
COUPON_LENGTH = 64
REASON_LENGTH = 200
AUDIT_SERVICE_LENGTH = 32
AUDIT_OUTCOME_LENGTH = 16
AUDIT_ROLE_LENGTH = 16
AUDIT_TARGET_TYPE_LENGTH = 32
AUDIT_TARGET_ID_LENGTH = 128
AUDIT_REQUEST_ID_LENGTH = 128
AUDIT_CLIENT_IP_LENGTH = 64


class Base(DeclarativeBase):
    """Declarative base of the data service (its own metadata and migrations)."""

    metadata = naming_metadata()


class RawEvent(Base):
    """Every event ingested, once: the unique event id makes a replay a no-op."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(EVENT_ID_LENGTH), unique=True)
    event_type: Mapped[str] = mapped_column(String(EVENT_TYPE_LENGTH), index=True)
    key: Mapped[str] = mapped_column(String(EVENT_KEY_LENGTH))
    occurred_at: Mapped[datetime] = mapped_column(Timestamp, index=True)
    received_at: Mapped[datetime] = mapped_column(Timestamp)
    # The payload as JSON, cut to a marker when larger than the ingest bound.
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class UserFact(Base):
    """A registered user, for the user count and new users per day."""

    __tablename__ = "users"

    user_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    registered_at: Mapped[datetime] = mapped_column(Timestamp, index=True)


class ProductFact(Base):
    """The last known title of a product (from product.created / product.updated)."""

    __tablename__ = "products"

    product_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    sku: Mapped[str | None] = mapped_column(String(SKU_LENGTH))
    title: Mapped[str | None] = mapped_column(String(TITLE_LENGTH))
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    # occurred_at of the event the title came from: an older event never overwrites it.
    title_at: Mapped[datetime | None] = mapped_column(Timestamp)


class OrderFact(Base):
    """One order as the events told it so far; any field may still be unknown (null).

    Events arrive in any order, so the row is created by whichever order event
    comes first and filled in by the others; ``status`` only moves forward.
    """

    __tablename__ = "orders"

    order_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    user_id: Mapped[int | None] = mapped_column(Integer, index=True)
    status: Mapped[str] = mapped_column(String(STATUS_LENGTH), index=True)
    subtotal_cents: Mapped[int | None] = mapped_column(BigInteger)
    discount_cents: Mapped[int | None] = mapped_column(BigInteger)
    total_cents: Mapped[int | None] = mapped_column(BigInteger)
    points_redeemed: Mapped[int | None] = mapped_column(BigInteger)
    coupon_code: Mapped[str | None] = mapped_column(String(COUPON_LENGTH))
    reason: Mapped[str | None] = mapped_column(String(REASON_LENGTH))
    created_at: Mapped[datetime | None] = mapped_column(Timestamp, index=True)
    awaiting_payment_at: Mapped[datetime | None] = mapped_column(Timestamp)
    paid_at: Mapped[datetime | None] = mapped_column(Timestamp, index=True)
    shipped_at: Mapped[datetime | None] = mapped_column(Timestamp)
    completed_at: Mapped[datetime | None] = mapped_column(Timestamp)
    cancelled_at: Mapped[datetime | None] = mapped_column(Timestamp, index=True)
    rejected_at: Mapped[datetime | None] = mapped_column(Timestamp, index=True)
    last_event_at: Mapped[datetime] = mapped_column(Timestamp)


class OrderLineFact(Base):
    """One line of an order: what top products add up (for orders that were paid)."""

    __tablename__ = "order_lines"

    order_id: Mapped[int] = mapped_column(
        ForeignKey("orders.order_id", ondelete="CASCADE"), primary_key=True
    )
    line_no: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    product_id: Mapped[int] = mapped_column(Integer, index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price_cents: Mapped[int] = mapped_column(BigInteger)


class AuditEntry(Base):
    """One entry of the audit log (an audit.recorded event), listed newest first.

    Written once per event id; the indexes serve the list's filters (actor id
    or email, action, time), each with the time for the newest-first order.
    """

    __tablename__ = "audit_entries"
    __table_args__ = (
        Index("ix_audit_entries_occurred_at_id", "occurred_at", "id"),
        Index("ix_audit_entries_actor_id_occurred_at", "actor_id", "occurred_at"),
        Index("ix_audit_entries_actor_email_occurred_at", "actor_email", "occurred_at"),
        Index("ix_audit_entries_action_occurred_at", "action", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(EVENT_ID_LENGTH), unique=True)
    occurred_at: Mapped[datetime] = mapped_column(Timestamp)
    service: Mapped[str] = mapped_column(String(AUDIT_SERVICE_LENGTH))
    action: Mapped[str] = mapped_column(String(AUDIT_ACTION_MAX_LENGTH))
    outcome: Mapped[str] = mapped_column(String(AUDIT_OUTCOME_LENGTH))
    actor_id: Mapped[int | None] = mapped_column(BigInteger)
    # Lower-cased, so that the actor filter matches whatever case was typed.
    actor_email: Mapped[str | None] = mapped_column(String(AUDIT_EMAIL_MAX_LENGTH))
    actor_role: Mapped[str | None] = mapped_column(String(AUDIT_ROLE_LENGTH))
    target_type: Mapped[str | None] = mapped_column(String(AUDIT_TARGET_TYPE_LENGTH))
    target_id: Mapped[str | None] = mapped_column(String(AUDIT_TARGET_ID_LENGTH))
    request_id: Mapped[str | None] = mapped_column(String(AUDIT_REQUEST_ID_LENGTH))
    client_ip: Mapped[str | None] = mapped_column(String(AUDIT_CLIENT_IP_LENGTH))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)


class InboxEvent(InboxMixin, Base):
    """An event a consumer group of this service has handled (redeliveries are no-ops)."""


class DeadLetter(DeadLetterMixin, Base):
    """A received event whose handling failed: still retrying, or parked for an operator."""
