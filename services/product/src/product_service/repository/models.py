"""SQLAlchemy models of the product service.

Besides the catalogue (categories, products, reviews) the service keeps the
stock reservations of the checkout saga, the purchases that make reviews
verified, and the messaging tables of meshmart_common (outbox, inbox, dead
letters).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from meshmart_common.db import UTCDateTime, naming_metadata, utc_now
from meshmart_common.messaging.models import DeadLetterMixin, InboxMixin, OutboxMixin


class Base(DeclarativeBase):
    """Declarative base of the product service (its own metadata and migrations)."""

    metadata = naming_metadata()


class Category(Base):
    """A shelf of the catalogue; products belong to exactly one."""

    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)


class Product(Base):
    """A sellable item with its price, stock counters and denormalised rating."""

    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("price_cents > 0", name="price_positive"),
        CheckConstraint("on_hand >= 0", name="on_hand_not_negative"),
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
        CheckConstraint("rating_count >= 0", name="rating_count_not_negative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sku: Mapped[str] = mapped_column(String(32), unique=True)
    title: Mapped[str] = mapped_column(String(200), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    price_cents: Mapped[int] = mapped_column(Integer, index=True)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    category_id: Mapped[int] = mapped_column(
        ForeignKey("categories.id", ondelete="RESTRICT"), index=True
    )
    image_url: Mapped[str | None] = mapped_column(String(500))
    on_hand: Mapped[int] = mapped_column(Integer, default=0)
    reserved: Mapped[int] = mapped_column(Integer, default=0)
    rating_sum: Mapped[int] = mapped_column(Integer, default=0)
    rating_count: Mapped[int] = mapped_column(Integer, default=0)
    # Average rating in hundredths (467 = 4.67), 0 without reviews: an exact
    # integer sort key that both SQLite and MySQL index and compare alike.
    rating_avg_x100: Mapped[int] = mapped_column(Integer, default=0, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)

    category: Mapped[Category] = relationship(lazy="joined", innerjoin=True)

    @property
    def available(self) -> int:
        """Units that can still be sold: on hand minus reserved."""
        return self.on_hand - self.reserved

    @property
    def rating_avg(self) -> float | None:
        """Average rating rounded to two decimals; None without reviews."""
        if self.rating_count == 0:
            return None
        return self.rating_avg_x100 / 100

    @property
    def is_deleted(self) -> bool:
        """True once soft-deleted."""
        return self.deleted_at is not None


class Review(Base):
    """One customer's 1-5 star review of one product."""

    __tablename__ = "reviews"
    __table_args__ = (
        UniqueConstraint("product_id", "user_id"),
        CheckConstraint("rating BETWEEN 1 AND 5", name="rating_range"),
        Index("ix_reviews_product_id_created_at", "product_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(Integer, index=True)
    author: Mapped[str] = mapped_column(String(64))
    rating: Mapped[int] = mapped_column(SmallInteger)
    title: Mapped[str | None] = mapped_column(String(120))
    body: Mapped[str | None] = mapped_column(String(2000))
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)


class ReservationState(StrEnum):
    """Where one reserved line of an order stands."""

    RESERVED = "reserved"  # counted in products.reserved
    RELEASED = "released"  # given back (order rejected or cancelled)
    COMMITTED = "committed"  # sold: taken off on_hand (order paid)


class StockReservation(Base):
    """Units of one product held for one order (the checkout saga's stock step).

    One row per (order, product); the quantities of an order's lines for the
    same product are added up. A row in state ``reserved`` is counted in its
    product's ``reserved`` column; release and commit move it on exactly once.
    """

    __tablename__ = "stock_reservations"
    __table_args__ = (
        UniqueConstraint("order_id", "product_id"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint(
            "state IN ('reserved', 'released', 'committed')",
            name="state_known",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(BigInteger)
    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="RESTRICT"), index=True
    )
    quantity: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default=ReservationState.RESERVED.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(precision=6), default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(precision=6), default=utc_now)


class Purchase(Base):
    """A user bought a product (an order of theirs with it was paid): reviews are verified."""

    __tablename__ = "purchases"
    __table_args__ = (UniqueConstraint("user_id", "product_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger)
    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), index=True
    )
    # The first paid order with the product (later ones add no row).
    order_id: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(precision=6), default=utc_now)


class OutboxEvent(OutboxMixin, Base):
    """Events written with the change they describe; the relay publishes them."""


class InboxEvent(InboxMixin, Base):
    """Events the service's consumer groups have handled (redeliveries are no-ops)."""


class DeadLetter(DeadLetterMixin, Base):
    """Events whose handling keeps failing: retrying, or parked for an operator."""
