"""Column types that hide what SQLite and MariaDB do differently."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from meshmart_common.auth import Role


class UTCDateTime(TypeDecorator[datetime]):
    """A UTC instant: stored without offset, always read back timezone-aware.

    SQLite and MariaDB DATETIME columns keep no offset and return naive values,
    which cannot be compared with aware ones; normalising at the boundary lets
    the domain work with aware UTC datetimes only.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            value = datetime.fromisoformat(str(value))
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class RoleType(TypeDecorator[Role]):
    """A :class:`Role` stored as its string value (no native ENUM, same DDL on every engine)."""

    impl = String(16)
    cache_ok = True

    def process_bind_param(self, value: Role | str | None, dialect: Dialect) -> str | None:
        return None if value is None else Role(value).value

    def process_result_value(self, value: Any | None, dialect: Dialect) -> Role | None:
        return None if value is None else Role(str(value))
