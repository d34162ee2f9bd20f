"""Read queries of the stats and report endpoints."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from data_service.repository.models import OrderFact, OrderLineFact, ProductFact, UserFact

BucketSize = Literal["day", "hour"]
OrderMoment = Literal["created", "cancelled", "rejected"]

_MOMENT_COLUMNS: dict[OrderMoment, InstrumentedAttribute[datetime | None]] = {
    "created": OrderFact.created_at,
    "cancelled": OrderFact.cancelled_at,
    "rejected": OrderFact.rejected_at,
}

# How a bucket key is spelt (and parsed back): UTC, to the day or the hour.
_KEY_FORMATS: dict[BucketSize, tuple[str, int]] = {
    "day": ("%Y-%m-%d", 10),
    "hour": ("%Y-%m-%d %H", 13),
}


@dataclass(frozen=True, slots=True)
class SalesTotals:
    """Number of orders and the sum of their totals."""

    orders: int
    gmv_cents: int


@dataclass(frozen=True, slots=True)
class ProductSales:
    """Units and line revenue of one product."""

    product_id: int
    title: str | None
    units_sold: int
    revenue_cents: int


def _int(value: Any) -> int:
    # MySQL returns SUM() as Decimal and nothing at all for no rows.
    return int(value or 0)


class StatsRepository:
    """Aggregates over the analytics tables (read-only)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def count_users(
        self, *, registered_from: datetime | None = None, registered_to: datetime | None = None
    ) -> int:
        """Users registered in [registered_from, registered_to) (all of them without bounds)."""
        query = select(func.count()).select_from(UserFact)
        if registered_from is not None:
            query = query.where(UserFact.registered_at >= registered_from)
        if registered_to is not None:
            query = query.where(UserFact.registered_at < registered_to)
        return _int(await self.session.scalar(query))

    async def orders_by_status(self) -> dict[str, int]:
        """Number of orders per status (statuses without orders left out)."""
        rows = await self.session.execute(
            select(OrderFact.status, func.count()).group_by(OrderFact.status)
        )
        return {status: _int(count) for status, count in rows}

    async def count_orders(
        self,
        moment: OrderMoment,
        start: datetime,
        end: datetime,
        *,
        statuses: Collection[str],
    ) -> int:
        """Orders in ``statuses`` whose ``moment`` (created, cancelled...) falls in [start, end)."""
        column = _MOMENT_COLUMNS[moment]
        return _int(
            await self.session.scalar(
                select(func.count())
                .select_from(OrderFact)
                .where(column >= start, column < end, OrderFact.status.in_(statuses))
            )
        )

    async def sales(
        self,
        statuses: Collection[str],
        *,
        paid_from: datetime | None = None,
        paid_to: datetime | None = None,
    ) -> SalesTotals:
        """Orders in ``statuses`` (paid in [paid_from, paid_to) when given) and their GMV."""
        query = select(func.count(), func.sum(OrderFact.total_cents)).where(
            OrderFact.status.in_(statuses)
        )
        if paid_from is not None:
            query = query.where(OrderFact.paid_at >= paid_from)
        if paid_to is not None:
            query = query.where(OrderFact.paid_at < paid_to)
        row = (await self.session.execute(query)).one()
        return SalesTotals(orders=_int(row[0]), gmv_cents=_int(row[1]))

    def _bucket_key(self, size: BucketSize) -> ColumnElement[str]:
        pattern, length = _KEY_FORMATS[size]
        if self.session.get_bind().dialect.name == "sqlite":
            # SQLite stores the UTC time as text 'YYYY-MM-DD HH:MM:SS.ffffff'.
            return func.substr(OrderFact.paid_at, 1, length)
        return func.date_format(OrderFact.paid_at, pattern)

    async def sales_by_bucket(
        self, statuses: Collection[str], start: datetime, end: datetime, size: BucketSize
    ) -> dict[datetime, SalesTotals]:
        """Orders in ``statuses`` paid in [start, end), grouped by UTC day or hour of payment.

        Keys are the bucket starts; buckets without sales are absent. The
        grouping runs in the database (one dialect-specific expression per
        engine), so the rows fetched are at most the number of buckets.
        """
        key = self._bucket_key(size).label("bucket")
        rows = await self.session.execute(
            select(key, func.count(), func.sum(OrderFact.total_cents))
            .where(
                OrderFact.status.in_(statuses),
                OrderFact.paid_at >= start,
                OrderFact.paid_at < end,
            )
            .group_by(key)
        )
        pattern = _KEY_FORMATS[size][0]
        return {
            datetime.strptime(str(bucket), pattern).replace(tzinfo=UTC): SalesTotals(
                orders=_int(orders), gmv_cents=_int(gmv)
            )
            for bucket, orders, gmv in rows
        }

    async def top_products(
        self,
        statuses: Collection[str],
        *,
        limit: int,
        paid_from: datetime | None = None,
        paid_to: datetime | None = None,
    ) -> Sequence[ProductSales]:
        """Best sellers among the lines of orders in ``statuses``: units, then revenue, then id."""
        units = func.sum(OrderLineFact.quantity)
        revenue = func.sum(OrderLineFact.quantity * OrderLineFact.unit_price_cents)
        query = (
            select(OrderLineFact.product_id, ProductFact.title, units, revenue)
            .join(OrderFact, OrderFact.order_id == OrderLineFact.order_id)
            .outerjoin(ProductFact, ProductFact.product_id == OrderLineFact.product_id)
            .where(OrderFact.status.in_(statuses))
        )
        if paid_from is not None:
            query = query.where(OrderFact.paid_at >= paid_from)
        if paid_to is not None:
            query = query.where(OrderFact.paid_at < paid_to)
        rows = await self.session.execute(
            query.group_by(OrderLineFact.product_id, ProductFact.title)
            .order_by(units.desc(), revenue.desc(), OrderLineFact.product_id)
            .limit(limit)
        )
        return [
            ProductSales(
                product_id=product_id,
                title=title,
                units_sold=_int(units_sold),
                revenue_cents=_int(revenue_cents),
            )
            for product_id, title, units_sold, revenue_cents in rows
        ]
