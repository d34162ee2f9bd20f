"""Writes of the ingest handler: the raw event log and the fact tables.

Rows that several events build together (an order, a product) are first
created empty by an upsert that leaves an existing row as it is, then locked
and filled in. Two concurrent events of one order thus never both insert it:
the second waits for the first's row lock instead of failing on the key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, insert, or_, select, update
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.ext.asyncio import AsyncSession

from data_service.repository.models import (
    OrderFact,
    OrderLineFact,
    ProductFact,
    RawEvent,
    UserFact,
)
from meshmart_common.db import insert_if_new


@dataclass(frozen=True, slots=True)
class LineRow:
    """One order line to store."""

    product_id: int
    quantity: int
    unit_price_cents: int


def _table(model: type[Any]) -> Table:
    return cast(Table, model.__table__)


class IngestRepository:
    """Writes the analytics tables in one session (flushes, never commits)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def _insert_new(self, table: Table, values: Mapping[str, Any]) -> bool:
        return await insert_if_new(self.session, table, values)

    async def _ensure_row(self, table: Table, values: Mapping[str, Any], key: str) -> None:
        """Insert the row unless its ``key`` exists; hold a write lock on it either way."""
        if self.session.get_bind().dialect.name == "mysql":
            # INSERT IGNORE would take a shared lock on an existing row, and two
            # transactions upgrading theirs to write (FOR UPDATE) deadlock;
            # ON DUPLICATE KEY UPDATE takes the exclusive lock at once.
            upsert = mysql_insert(table).values(**values)
            await self.session.execute(upsert.on_duplicate_key_update({key: upsert.inserted[key]}))
            return
        await self._insert_new(table, values)

    async def record_event(
        self,
        *,
        event_id: str,
        event_type: str,
        key: str,
        occurred_at: datetime,
        received_at: datetime,
        data: dict[str, Any],
    ) -> bool:
        """Store the raw event; False (and nothing written) when its id is already stored."""
        return await self._insert_new(
            _table(RawEvent),
            {
                "event_id": event_id,
                "event_type": event_type,
                "key": key,
                "occurred_at": occurred_at,
                "received_at": received_at,
                "data": data,
            },
        )

    async def add_user(self, user_id: int, registered_at: datetime) -> bool:
        """Count a registered user once; False when already counted."""
        return await self._insert_new(
            _table(UserFact), {"user_id": user_id, "registered_at": registered_at}
        )

    async def save_product(
        self, product_id: int, *, sku: str, title: str, deleted: bool, seen_at: datetime
    ) -> None:
        """Keep the product's sku, title and deleted flag unless newer ones are stored."""
        await self._ensure_row(
            _table(ProductFact), {"product_id": product_id, "deleted": False}, "product_id"
        )
        await self.session.execute(
            update(ProductFact)
            .where(
                ProductFact.product_id == product_id,
                or_(ProductFact.title_at.is_(None), ProductFact.title_at <= seen_at),
            )
            .values(sku=sku, title=title, deleted=deleted, title_at=seen_at)
            .execution_options(synchronize_session=False)
        )

    async def lock_order(
        self, order_id: int, *, initial_status: str, seen_at: datetime
    ) -> OrderFact:
        """The order's row, created empty when it is the first event of it, locked for update."""
        await self._ensure_row(
            _table(OrderFact),
            {"order_id": order_id, "status": initial_status, "last_event_at": seen_at},
            "order_id",
        )
        result = await self.session.scalars(
            select(OrderFact)
            .where(OrderFact.order_id == order_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return result.one()

    async def lines_of(self, order_id: int) -> list[LineRow]:
        """The stored lines of the order, in line order."""
        rows = await self.session.execute(
            select(OrderLineFact.product_id, OrderLineFact.quantity, OrderLineFact.unit_price_cents)
            .where(OrderLineFact.order_id == order_id)
            .order_by(OrderLineFact.line_no)
        )
        return [LineRow(product_id, quantity, price) for product_id, quantity, price in rows]

    async def replace_lines(self, order_id: int, lines: Sequence[LineRow]) -> None:
        """Store exactly ``lines`` as the order's lines (call with the order's row locked)."""
        stored = await self.lines_of(order_id)
        if stored == list(lines):
            # The usual case (order.paid repeats order.created's lines): no write,
            # so no InnoDB gap locks that concurrent orders' inserts could wait on.
            return
        if stored:
            await self.session.execute(
                delete(OrderLineFact).where(OrderLineFact.order_id == order_id)
            )
        if lines:
            await self.session.execute(
                insert(OrderLineFact),
                [
                    {
                        "order_id": order_id,
                        "line_no": number,
                        "product_id": line.product_id,
                        "quantity": line.quantity,
                        "unit_price_cents": line.unit_price_cents,
                    }
                    for number, line in enumerate(lines, start=1)
                ],
            )

    async def flush(self) -> None:
        """Write pending changes of loaded rows."""
        await self.session.flush()
