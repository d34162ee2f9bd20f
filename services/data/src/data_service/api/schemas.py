"""Response bodies and query parameter types of the data API.

Money is integer cents; times are UTC and rendered with an offset.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema

from data_service.domain.stats import (
    DailyReport,
    Granularity,
    Overview,
    SalesSeries,
)
from data_service.domain.times import as_utc
from data_service.repository.models import AuditEntry
from data_service.repository.stats import ProductSales
from meshmart_common.events import AuditOutcome
from meshmart_common.pagination import Page

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
"""Times accepted in queries lie in [EARLIEST, LATEST): room to round up and step back."""

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_MAX_INSTANT_LENGTH = 40


def _instant(value: Any) -> datetime:
    if not isinstance(value, str) or len(value) > _MAX_INSTANT_LENGTH:
        raise ValueError("must be an ISO 8601 date or date-time")
    try:
        moment = as_utc(datetime.fromisoformat(value))
    except (ValueError, OverflowError) as exc:
        raise ValueError("must be an ISO 8601 date or date-time") from exc
    if not EARLIEST <= moment < LATEST:
        raise ValueError("must lie between 1970 and 9998")
    return moment


def _day(value: Any) -> date:
    if not isinstance(value, str) or _DAY.fullmatch(value) is None:
        raise ValueError("must be a date YYYY-MM-DD")
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError("must be a valid calendar date YYYY-MM-DD") from exc
    if not EARLIEST.date() <= day < LATEST.date():
        raise ValueError("must lie between 1970 and 9998")
    return day


Instant = Annotated[
    datetime,
    PlainValidator(_instant),
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": _MAX_INSTANT_LENGTH,
            "description": "ISO 8601 date or date-time; without an offset it is UTC",
            "examples": ["2026-11-20", "2026-11-20T08:00:00Z"],
        }
    ),
]
"""A query time: an ISO date (midnight UTC) or date-time (UTC unless it has an offset)."""

Day = Annotated[
    date,
    PlainValidator(_day),
    WithJsonSchema({"type": "string", "format": "date", "examples": ["2026-11-27"]}),
]
"""A query date YYYY-MM-DD (a UTC day)."""


class OverviewRead(BaseModel):
    """Headline numbers: users, orders per status, GMV and average order value."""

    users: int = Field(description="registered users")
    orders_by_status: dict[str, int] = Field(description="every status, zeros included")
    orders_total: int
    gmv_cents: int = Field(description="sum of total_cents of PAID, SHIPPED and COMPLETED orders")
    average_order_value_cents: int = Field(description="gmv_cents / paid_orders, rounded down")
    paid_orders: int = Field(description="orders PAID, SHIPPED or COMPLETED")

    @classmethod
    def of(cls, overview: Overview) -> OverviewRead:
        """Render an overview."""
        return cls(
            users=overview.users,
            orders_by_status=overview.orders_by_status,
            orders_total=overview.orders_total,
            gmv_cents=overview.gmv_cents,
            average_order_value_cents=overview.average_order_value_cents,
            paid_orders=overview.paid_orders,
        )


class SalesBucketRead(BaseModel):
    """One bucket: orders paid in it and their GMV."""

    start: datetime
    orders: int
    gmv_cents: int


class SalesSeriesRead(BaseModel):
    """Sales per bucket over [from, to), every bucket present."""

    model_config = ConfigDict(populate_by_name=True)

    granularity: Granularity
    from_: datetime = Field(alias="from", description="start of the first bucket")
    to: datetime = Field(description="end of the last bucket")
    buckets: list[SalesBucketRead]

    @classmethod
    def of(cls, series: SalesSeries) -> SalesSeriesRead:
        """Render a sales series."""
        return cls(
            granularity=series.granularity,
            from_=series.start,
            to=series.end,
            buckets=[
                SalesBucketRead(start=b.start, orders=b.orders, gmv_cents=b.gmv_cents)
                for b in series.buckets
            ],
        )


class ProductSalesRead(BaseModel):
    """Sales of one product."""

    product_id: int
    title: str | None = Field(description="last known title; null when never seen")
    units_sold: int
    revenue_cents: int = Field(description="quantity x unit price of its lines")

    @classmethod
    def of(cls, sales: ProductSales) -> ProductSalesRead:
        """Render a product's sales."""
        return cls(
            product_id=sales.product_id,
            title=sales.title,
            units_sold=sales.units_sold,
            revenue_cents=sales.revenue_cents,
        )


class DailyReportRead(BaseModel):
    """What happened on one UTC day."""

    date: date
    orders_created: int
    orders_paid: int
    orders_cancelled: int
    orders_rejected: int
    gmv_cents: int
    new_users: int
    top_products: list[ProductSalesRead]

    @classmethod
    def of(cls, report: DailyReport) -> DailyReportRead:
        """Render a daily report."""
        return cls(
            date=report.day,
            orders_created=report.orders_created,
            orders_paid=report.orders_paid,
            orders_cancelled=report.orders_cancelled,
            orders_rejected=report.orders_rejected,
            gmv_cents=report.gmv_cents,
            new_users=report.new_users,
            top_products=[ProductSalesRead.of(p) for p in report.top_products],
        )


class AuditEntryRead(BaseModel):
    """One audit log entry: who did what, how it ended, through which request."""

    id: int
    event_id: str = Field(description="the audit.recorded event's id (unique)")
    occurred_at: datetime
    service: str = Field(description="the service that recorded it", examples=["user"])
    action: str = Field(examples=["auth.login.failed", "admin.product.updated"])
    outcome: AuditOutcome
    actor_id: int | None = Field(description="the account; null when unknown (failed login)")
    actor_email: str | None = Field(
        description="the account's email, or the email a failed login tried"
    )
    actor_role: str | None
    target_type: str | None = Field(examples=["product"])
    target_id: str | None = Field(examples=["12"])
    request_id: str | None = Field(description="X-Request-ID of the request that acted")
    client_ip: str | None
    details: dict[str, Any] = Field(description="a few bounded facts, never a secret")

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditEntryRead:
        """Render a stored entry."""
        return cls(
            id=entry.id,
            event_id=entry.event_id,
            occurred_at=entry.occurred_at,
            service=entry.service,
            action=entry.action,
            outcome=AuditOutcome(entry.outcome),
            actor_id=entry.actor_id,
            actor_email=entry.actor_email,
            actor_role=entry.actor_role,
            target_type=entry.target_type,
            target_id=entry.target_id,
            request_id=entry.request_id,
            client_ip=entry.client_ip,
            details=entry.details,
        )


AuditEntryPage = Page[AuditEntryRead]
"""One page of audit entries, newest first."""
