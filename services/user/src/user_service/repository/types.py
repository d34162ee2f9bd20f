"""The user service's own column types (the shared ones are in meshmart_common.db)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from meshmart_common.auth import Role


class RoleType(TypeDecorator[Role]):
    """A :class:`Role` stored as its string value (no native ENUM, same DDL on every engine)."""

    impl = String(16)
    cache_ok = True

    def process_bind_param(self, value: Role | str | None, dialect: Dialect) -> str | None:
        return None if value is None else Role(value).value

    def process_result_value(self, value: Any | None, dialect: Dialect) -> Role | None:
        return None if value is None else Role(str(value))
