"""INSERT that skips a row whose key exists, on SQLite and MySQL/MariaDB alike."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy import CursorResult, Table
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Insert


def _insert_ignoring_duplicates(
    session: AsyncSession, table: Table, values: Mapping[str, Any]
) -> Insert:
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        return sqlite_insert(table).values(**values).on_conflict_do_nothing()
    if dialect == "mysql":  # MariaDB too
        # INSERT IGNORE reports 0 rows for a duplicate whatever the client
        # flags; ON DUPLICATE KEY UPDATE would report 1 with FOUND_ROWS.
        return mysql_insert(table).values(**values).prefix_with("IGNORE")
    raise NotImplementedError(f"unsupported database dialect {dialect!r}")


async def insert_if_new(session: AsyncSession, table: Table, values: Mapping[str, Any]) -> bool:
    """Insert one row unless its key exists; True when this call inserted it.

    A concurrent writer of the same key makes this wait for its transaction
    (the key's row lock on MySQL, the write lock on SQLite) instead of failing
    on the key, so the caller can then read the winner's committed row.
    """
    result = await session.execute(_insert_ignoring_duplicates(session, table, values))
    return cast("CursorResult[Any]", result).rowcount > 0
