"""SQLAlchemy models of the trade service: campaigns, coupons, points and per-order holds.

Plus the messaging tables every service keeps (``outbox_events``,
``inbox_events``, ``dead_letters``), declared from the shared mixins.

Every timestamp column is a :class:`~meshmart_common.db.UTCDateTime`: written
in UTC and read back timezone-aware UTC, ready to compare and render.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from meshmart_common.db import UTCDateTime, naming_metadata, utc_now
from meshmart_common.messaging.models import DeadLetterMixin, InboxMixin, OutboxMixin

# DATETIME(6) on MySQL/MariaDB, as migration 0002 created it: a plain DATETIME
# drops the fraction of a second, making "newest first" a coin toss for rows
# written in the same second.
Timestamp = UTCDateTime(precision=6)

CODE_LENGTH = 32
NAME_LENGTH = 100
STATUS_LENGTH = 16
REASON_LENGTH = 200


class DiscountType(StrEnum):
    """How a campaign's ``discount_value`` reads: cents off, or a percentage of the subtotal."""

    FIXED = "fixed"
    PERCENT = "percent"


class CouponStatus(StrEnum):
    """Where a claimed coupon stands."""

    AVAILABLE = "available"
    LOCKED = "locked"  # held for an order that is not paid yet
    USED = "used"
    EXPIRED = "expired"


class PointsReason(StrEnum):
    """Why a points history entry was written."""

    EARNED = "earned"  # awarded for a paid order
    REDEEMED = "redeemed"  # spent on a paid order
    REFUNDED = "refunded"  # held for an order that was cancelled, given back
    LOCKED = "locked"  # held for a pending order
    RELEASED = "released"  # hold lifted: the order was rejected, or paid (then redeemed)
    ADJUSTED = "adjusted"  # granted by an admin or the demo seeder


class HoldStatus(StrEnum):
    """Where trade's part of one order stands (see :class:`TradeHold`)."""

    PENDING = "pending"
    LOCKED = "locked"
    REJECTED = "rejected"
    CONSUMED = "consumed"
    RELEASED = "released"
    VOID = "void"


class Base(DeclarativeBase):
    """Declarative base of the trade service (its own metadata and migrations)."""

    metadata = naming_metadata()


class CouponCampaign(Base):
    """An admin's offer: a code customers claim coupons of, within a window and a quantity."""

    __tablename__ = "coupon_campaigns"
    __table_args__ = (
        CheckConstraint("discount_type IN ('fixed', 'percent')", name="discount_type_known"),
        CheckConstraint("discount_value > 0", name="discount_value_positive"),
        CheckConstraint("min_spend_cents >= 0", name="min_spend_not_negative"),
        CheckConstraint("total_quantity > 0", name="total_quantity_positive"),
        CheckConstraint("per_user_limit > 0", name="per_user_limit_positive"),
        CheckConstraint(
            "claimed_count >= 0 AND claimed_count <= total_quantity", name="claimed_in_range"
        ),
        CheckConstraint("used_count >= 0 AND used_count <= claimed_count", name="used_in_range"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(CODE_LENGTH), unique=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    discount_type: Mapped[str] = mapped_column(String(STATUS_LENGTH))
    discount_value: Mapped[int] = mapped_column(Integer)
    min_spend_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    total_quantity: Mapped[int] = mapped_column(Integer)
    per_user_limit: Mapped[int] = mapped_column(Integer, default=1)
    claimed_count: Mapped[int] = mapped_column(Integer, default=0)
    used_count: Mapped[int] = mapped_column(Integer, default=0)
    starts_at: Mapped[datetime] = mapped_column(Timestamp)
    ends_at: Mapped[datetime] = mapped_column(Timestamp)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utc_now, index=True)


class Coupon(Base):
    """One coupon a customer claimed from a campaign; spent by at most one order.

    ``claim_number`` counts the user's claims of the campaign (1, 2, ...):
    unique per user and campaign, so two concurrent claims past the per-user
    limit cannot both be stored.
    """

    __tablename__ = "coupons"
    __table_args__ = (
        UniqueConstraint("campaign_id", "user_id", "claim_number"),
        CheckConstraint(
            "status IN ('available', 'locked', 'used', 'expired')", name="status_known"
        ),
        CheckConstraint("claim_number > 0", name="claim_number_positive"),
        Index("ix_coupons_user_id_status", "user_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("coupon_campaigns.id", ondelete="RESTRICT"))
    user_id: Mapped[int] = mapped_column(Integer)
    claim_number: Mapped[int] = mapped_column(Integer)
    code: Mapped[str] = mapped_column(String(CODE_LENGTH))
    status: Mapped[str] = mapped_column(String(STATUS_LENGTH))
    order_id: Mapped[int | None] = mapped_column(Integer, index=True)
    claimed_at: Mapped[datetime] = mapped_column(Timestamp, default=utc_now)
    used_at: Mapped[datetime | None] = mapped_column(Timestamp)

    campaign: Mapped[CouponCampaign] = relationship(lazy="joined", innerjoin=True)


class PointsAccount(Base):
    """A user's points: ``balance`` includes the ``locked`` part held for pending orders."""

    __tablename__ = "points_accounts"
    __table_args__ = (
        CheckConstraint("balance >= 0", name="balance_not_negative"),
        CheckConstraint("locked >= 0 AND locked <= balance", name="locked_in_range"),
    )

    user_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    locked: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utc_now)

    @property
    def available(self) -> int:
        """Points that can be redeemed now: balance minus locked."""
        return self.balance - self.locked


class PointsEntry(Base):
    """One line of a user's points history; ``delta`` is the change in available points."""

    __tablename__ = "points_entries"
    __table_args__ = (
        CheckConstraint(
            "reason IN ('earned', 'redeemed', 'refunded', 'locked', 'released', 'adjusted')",
            name="reason_known",
        ),
        Index("ix_points_entries_user_id_created_at", "user_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(Integer)
    delta: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(STATUS_LENGTH))
    order_id: Mapped[int | None] = mapped_column(Integer, index=True)
    note: Mapped[str | None] = mapped_column(String(REASON_LENGTH))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utc_now)


class TradeHold(Base):
    """What trade holds for one order: the saga's per-order record and idempotency key.

    ``status`` is ``pending`` only inside the transaction that decides it, then
    ``locked`` or ``rejected``; a locked hold ends ``consumed`` (paid) or
    ``released`` (rejected, cancelled). ``void`` marks an order released
    before trade ever locked anything for it, so a late lock refuses.
    """

    __tablename__ = "trade_holds"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'locked', 'rejected', 'consumed', 'released', 'void')",
            name="status_known",
        ),
        CheckConstraint("points_locked >= 0", name="points_locked_not_negative"),
        CheckConstraint("discount_cents >= 0", name="discount_not_negative"),
    )

    order_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    user_id: Mapped[int] = mapped_column(Integer, index=True)
    status: Mapped[str] = mapped_column(String(STATUS_LENGTH))
    coupon_id: Mapped[int | None] = mapped_column(
        ForeignKey("coupons.id", ondelete="RESTRICT"), index=True
    )
    coupon_code: Mapped[str | None] = mapped_column(String(CODE_LENGTH))
    discount_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    points_locked: Mapped[int] = mapped_column(BigInteger, default=0)
    reason: Mapped[str | None] = mapped_column(String(REASON_LENGTH))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utc_now)


# --- messaging --------------------------------------------------------------------


class OutboxEvent(OutboxMixin, Base):
    """An event written with the change it describes; the relay publishes it after commit."""


class InboxEvent(InboxMixin, Base):
    """An order event trade's consumer group has handled (redeliveries are no-ops)."""


class DeadLetter(DeadLetterMixin, Base):
    """An order event whose handling keeps failing: retrying, or parked for an operator."""
