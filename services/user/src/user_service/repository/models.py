"""SQLAlchemy models of the user service."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, text
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from meshmart_common.auth import Role
from meshmart_common.db import UTCDateTime, naming_metadata
from meshmart_common.messaging.models import OutboxMixin
from user_service.repository.types import RoleType

EMAIL_MAX_LENGTH = 254
FULL_NAME_MAX_LENGTH = 100

# MySQL's default utf8mb4_unicode_ci would make "jose@" and "josé@" one
# address; emails are stored lower-cased, so an exact binary comparison is right.
EMAIL_TYPE = String(EMAIL_MAX_LENGTH).with_variant(
    mysql.VARCHAR(EMAIL_MAX_LENGTH, collation="utf8mb4_bin"), "mysql", "mariadb"
)

# Whole seconds on MySQL/MariaDB: migration 0001 created plain DATETIME columns
# there. Keeping microseconds (the shared default) needs a migration of its own.
Timestamp = UTCDateTime(precision=0)


class Base(DeclarativeBase):
    """Declarative base of the user service (its own metadata and migrations)."""

    metadata = naming_metadata()


class User(Base):
    """An account. ``email`` is stored normalised to lower case, so uniqueness ignores case."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(EMAIL_TYPE, unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    full_name: Mapped[str | None] = mapped_column(String(FULL_NAME_MAX_LENGTH))
    role: Mapped[Role] = mapped_column(RoleType())
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)
    # Login throttling lives here, not in process memory, so every replica sees it.
    failed_login_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    locked_until: Mapped[datetime | None] = mapped_column(Timestamp)


class RefreshToken(Base):
    """One refresh token of a login session (a family); only its SHA-256 is stored."""

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[str] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    expires_at: Mapped[datetime] = mapped_column(Timestamp)
    used_at: Mapped[datetime | None] = mapped_column(Timestamp)
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp)


class Address(Base):
    """A shipping address of a user."""

    __tablename__ = "addresses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    recipient: Mapped[str] = mapped_column(String(100))
    line1: Mapped[str] = mapped_column(String(200))
    line2: Mapped[str | None] = mapped_column(String(200))
    city: Mapped[str] = mapped_column(String(100))
    postal_code: Mapped[str] = mapped_column(String(20))
    country: Mapped[str] = mapped_column(String(2))
    phone: Mapped[str | None] = mapped_column(String(32))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    updated_at: Mapped[datetime] = mapped_column(Timestamp)


class OutboxEvent(OutboxMixin, Base):
    """An event written with the change it describes; the outbox relay publishes it."""
