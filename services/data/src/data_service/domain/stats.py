"""Stats and reports over the analytics tables: overview, sales series, top products, daily."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from data_service.domain.orders import SOLD_STATUSES, OrderStatus
from data_service.repository.stats import BucketSize, ProductSales, StatsRepository
from meshmart_common.db import utc_now
from meshmart_common.errors import ValidationFailed

DEFAULT_SALES_WINDOW = timedelta(days=7)
"""The sales series covers the last 7 days when no range is given."""

DAILY_TOP_PRODUCTS = 10
"""Products listed in a daily report."""

_SOLD = [status.value for status in SOLD_STATUSES]


class Granularity(StrEnum):
    """Width of one bucket of the sales series (UTC)."""

    DAY = "day"
    HOUR = "hour"

    @property
    def step(self) -> timedelta:
        """The width of one bucket."""
        return timedelta(days=1) if self is Granularity.DAY else timedelta(hours=1)

    @property
    def max_buckets(self) -> int:
        """The most buckets one series may have: about ten years daily, three months hourly."""
        return 3660 if self is Granularity.DAY else 24 * 93

    def floor(self, moment: datetime) -> datetime:
        """The start of the bucket holding ``moment``."""
        start = moment.replace(minute=0, second=0, microsecond=0)
        return start.replace(hour=0) if self is Granularity.DAY else start

    def ceil(self, moment: datetime) -> datetime:
        """The first bucket start at or after ``moment``."""
        start = self.floor(moment)
        return start if start == moment else start + self.step


@dataclass(frozen=True, slots=True)
class Overview:
    """Headline numbers over everything ingested so far."""

    users: int
    orders_by_status: dict[str, int]
    orders_total: int
    gmv_cents: int
    average_order_value_cents: int
    paid_orders: int


@dataclass(frozen=True, slots=True)
class SalesBucket:
    """Sales of one bucket: orders paid in it and their GMV."""

    start: datetime
    orders: int
    gmv_cents: int


@dataclass(frozen=True, slots=True)
class SalesSeries:
    """Sales per bucket over [start, end), every bucket present (zeros included)."""

    granularity: Granularity
    start: datetime
    end: datetime
    buckets: list[SalesBucket]


@dataclass(frozen=True, slots=True)
class DailyReport:
    """What happened on one UTC day."""

    day: date
    orders_created: int
    orders_paid: int
    orders_cancelled: int
    orders_rejected: int
    gmv_cents: int
    new_users: int
    top_products: Sequence[ProductSales]


def _range_error(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"{field}: {message}.", errors=[{"field": field, "location": "query", "message": message}]
    )


class StatsService:
    """Reads the analytics tables into stats and reports."""

    def __init__(self, session: AsyncSession) -> None:
        self.stats = StatsRepository(session)

    async def overview(self) -> Overview:
        """Registered users, orders per status, and GMV over the sold orders.

        GMV is the sum of ``total_cents`` of PAID, SHIPPED and COMPLETED
        orders (what customers paid, after discounts and points); the average
        order value is GMV divided by their number, rounded down, 0 when none.
        """
        by_status = {status.value: 0 for status in OrderStatus}
        by_status.update(await self.stats.orders_by_status())
        sold = await self.stats.sales(_SOLD)
        return Overview(
            users=await self.stats.count_users(),
            orders_by_status=by_status,
            orders_total=sum(by_status.values()),
            gmv_cents=sold.gmv_cents,
            average_order_value_cents=sold.gmv_cents // sold.orders if sold.orders else 0,
            paid_orders=sold.orders,
        )

    async def sales(
        self,
        granularity: Granularity,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        now: datetime | None = None,
    ) -> SalesSeries:
        """Sales per UTC day or hour, by payment time, over whole buckets.

        ``start`` is rounded down and ``end`` up to bucket boundaries; without
        ``end`` the series runs to the end of the current bucket, without
        ``start`` it covers the 7 days before ``end``. ValidationFailed when
        ``end`` is not after ``start`` or the range needs more buckets than
        the granularity allows.
        """
        if start is not None and end is not None and end <= start:
            raise _range_error("to", "must be after from")
        last = granularity.ceil(end if end is not None else (now or utc_now()))
        first = granularity.floor(start) if start is not None else last - DEFAULT_SALES_WINDOW
        if last <= first:
            raise _range_error("from", "must be before the end of the current period")
        count = (last - first) // granularity.step
        if count > granularity.max_buckets:
            raise _range_error(
                "to",
                f"the range spans {count} {granularity.value} buckets; "
                f"at most {granularity.max_buckets} are allowed",
            )
        size: BucketSize = "day" if granularity is Granularity.DAY else "hour"
        found = await self.stats.sales_by_bucket(_SOLD, first, last, size)
        buckets = []
        for index in range(count):
            bucket_start = first + index * granularity.step
            totals = found.get(bucket_start)
            buckets.append(
                SalesBucket(
                    start=bucket_start,
                    orders=totals.orders if totals else 0,
                    gmv_cents=totals.gmv_cents if totals else 0,
                )
            )
        return SalesSeries(granularity=granularity, start=first, end=last, buckets=buckets)

    async def top_products(self, limit: int) -> Sequence[ProductSales]:
        """Best-selling products of all sold orders: units, then line revenue, then id.

        Revenue is quantity times unit price of the lines, before order-level
        discounts and points (those are not split over the lines).
        """
        return await self.stats.top_products(_SOLD, limit=limit)

    async def daily_report(self, day: date) -> DailyReport:
        """Orders created, paid, cancelled and rejected, GMV, new users and top products of a day.

        Each order counts on the UTC day of its own event: created on
        ``created_at``, paid (and GMV, and top products) on ``paid_at`` while
        it stays sold, cancelled on ``cancelled_at``, rejected on the time of
        its order.rejected event.
        """
        start = datetime.combine(day, time(), tzinfo=UTC)
        end = start + timedelta(days=1)
        every_status = [status.value for status in OrderStatus]
        paid = await self.stats.sales(_SOLD, paid_from=start, paid_to=end)
        return DailyReport(
            day=day,
            orders_created=await self.stats.count_orders(
                "created", start, end, statuses=every_status
            ),
            orders_paid=paid.orders,
            orders_cancelled=await self.stats.count_orders(
                "cancelled", start, end, statuses=[OrderStatus.CANCELLED.value]
            ),
            orders_rejected=await self.stats.count_orders(
                "rejected", start, end, statuses=[OrderStatus.REJECTED.value]
            ),
            gmv_cents=paid.gmv_cents,
            new_users=await self.stats.count_users(registered_from=start, registered_to=end),
            top_products=await self.stats.top_products(
                _SOLD, limit=DAILY_TOP_PRODUCTS, paid_from=start, paid_to=end
            ),
        )
