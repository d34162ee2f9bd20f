"""Stock counters and reservations: conditional UPDATEs that never let stock go negative.

Every change of ``products.on_hand`` / ``products.reserved`` made for an order
is one UPDATE whose WHERE clause holds the condition (enough units available,
enough units reserved). The database evaluates it against the latest
committed row while it holds the row's write lock (InnoDB's row lock, SQLite's
database write lock), so concurrent checkouts of the last units cannot both
succeed: the loser's UPDATE matches no row.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from product_service.repository.models import Product, ReservationState, StockReservation

MAX_UNITS = 2**31 - 1
"""Stock columns are 32-bit integers; no line can ask for more than this."""


def _matched(result: object) -> bool:
    return cast("CursorResult[Any]", result).rowcount > 0


class StockRepository:
    """Stock counters and reservation rows in one session (flushes, never commits)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def open_transaction(self) -> None:
        """On SQLite, begin the driver's transaction now if it has not begun (else a no-op).

        Python's sqlite3 driver begins a transaction only before INSERT,
        UPDATE or DELETE; a SAVEPOINT issued first opens the transaction
        itself, and releasing that savepoint then COMMITs. The consumer's
        transaction has always written its inbox row by then; this keeps a
        savepoint safe for any other caller too. Call it right before the
        savepoint, after the transaction's reads.
        """
        if self.session.get_bind().dialect.name != "sqlite":
            return
        connection = await self.session.connection()
        raw = await connection.get_raw_connection()
        if not getattr(raw.driver_connection, "in_transaction", True):
            await connection.exec_driver_sql("BEGIN")

    # --- counters ------------------------------------------------------------------

    async def reserve_units(self, product_id: int, quantity: int, *, now: datetime) -> bool:
        """Add ``quantity`` to the live product's reserved units if that many are available.

        False (nothing written) for an unknown or deleted product or too little stock.
        """
        if not 0 < quantity <= MAX_UNITS or not 0 < product_id <= MAX_UNITS:
            return False
        result = await self.session.execute(
            update(Product)
            .where(
                Product.id == product_id,
                Product.deleted_at.is_(None),
                Product.on_hand - Product.reserved >= quantity,
            )
            .values(reserved=Product.reserved + quantity, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        return _matched(result)

    async def release_units(self, product_id: int, quantity: int, *, now: datetime) -> bool:
        """Take ``quantity`` off the product's reserved units; False when fewer are reserved."""
        result = await self.session.execute(
            update(Product)
            .where(Product.id == product_id, Product.reserved >= quantity)
            .values(reserved=Product.reserved - quantity, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        return _matched(result)

    async def commit_units(self, product_id: int, quantity: int, *, now: datetime) -> bool:
        """Turn ``quantity`` reserved units into sold ones (off on_hand and reserved).

        False when fewer are reserved (or on hand), which a reservation never allows.
        """
        result = await self.session.execute(
            update(Product)
            .where(
                Product.id == product_id,
                Product.reserved >= quantity,
                Product.on_hand >= quantity,
            )
            .values(
                on_hand=Product.on_hand - quantity,
                reserved=Product.reserved - quantity,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        return _matched(result)

    async def counters(self, product_id: int) -> tuple[int, int]:
        """The product's (on_hand, reserved) as this transaction sees them now."""
        row = (
            await self.session.execute(
                select(Product.on_hand, Product.reserved).where(Product.id == product_id)
            )
        ).one()
        return int(row.on_hand), int(row.reserved)

    async def live_product_ids(self, product_ids: Sequence[int]) -> set[int]:
        """Which of ``product_ids`` exist and are not soft-deleted."""
        wanted = [pid for pid in product_ids if 0 < pid <= MAX_UNITS]
        if not wanted:
            return set()
        rows = await self.session.scalars(
            select(Product.id).where(Product.id.in_(wanted), Product.deleted_at.is_(None))
        )
        return set(rows)

    async def existing_product_ids(self, product_ids: Sequence[int]) -> set[int]:
        """Which of ``product_ids`` exist (soft-deleted ones included)."""
        wanted = [pid for pid in product_ids if 0 < pid <= MAX_UNITS]
        if not wanted:
            return set()
        return set(await self.session.scalars(select(Product.id).where(Product.id.in_(wanted))))

    # --- reservations --------------------------------------------------------------

    async def has_reservations(self, order_id: int) -> bool:
        """True when any reservation row (in any state) exists for the order."""
        found = await self.session.scalar(
            select(StockReservation.id).where(StockReservation.order_id == order_id).limit(1)
        )
        return found is not None

    async def reservations(
        self, order_id: int, *, state: ReservationState | None = None
    ) -> Sequence[StockReservation]:
        """The order's reservation rows by product id (of ``state`` when given)."""
        query = select(StockReservation).where(StockReservation.order_id == order_id)
        if state is not None:
            query = query.where(StockReservation.state == state.value)
        result = await self.session.scalars(query.order_by(StockReservation.product_id))
        return result.all()

    async def add_reservations(self, rows: Sequence[StockReservation]) -> None:
        """Insert reservation rows."""
        self.session.add_all(rows)
        await self.session.flush()

    async def move_reservation(
        self,
        reservation: StockReservation,
        *,
        from_state: ReservationState,
        to_state: ReservationState,
        now: datetime,
    ) -> bool:
        """Move one reservation from ``from_state`` to ``to_state``; False when it was not there.

        Conditional, so a release and a commit of the same order racing each
        other move the row once between them.
        """
        result = await self.session.execute(
            update(StockReservation)
            .where(
                StockReservation.id == reservation.id,
                StockReservation.state == from_state.value,
            )
            .values(state=to_state.value, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        moved = _matched(result)
        if moved:
            reservation.state = to_state.value
            reservation.updated_at = now
        return moved
