"""Routes /api/v1/stats: overview, sales series and top products (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from data_service.api.deps import ADMIN_PROBLEMS, StatsDep
from data_service.api.schemas import Instant, OverviewRead, ProductSalesRead, SalesSeriesRead
from data_service.domain.stats import Granularity
from meshmart_common.auth import AdminUser

router = APIRouter(prefix="/stats", tags=["stats"])


@router.get("/overview", response_model=OverviewRead, responses=ADMIN_PROBLEMS)
async def get_overview(stats: StatsDep, _admin: AdminUser) -> OverviewRead:
    """Users, orders per status, GMV and average order value over all events so far (admin)."""
    return OverviewRead.of(await stats.overview())


@router.get("/sales", response_model=SalesSeriesRead, responses=ADMIN_PROBLEMS)
async def get_sales(
    stats: StatsDep,
    _admin: AdminUser,
    from_: Annotated[
        Instant | None,
        Query(alias="from", description="start (rounded down to a bucket); default: to - 7 days"),
    ] = None,
    to: Annotated[
        Instant | None,
        Query(description="end, exclusive (rounded up to a bucket); default: now"),
    ] = None,
    granularity: Annotated[Granularity, Query(description="bucket width (UTC)")] = (
        Granularity.DAY
    ),
) -> SalesSeriesRead:
    """Paid orders and GMV per UTC day or hour, empty buckets included (admin)."""
    return SalesSeriesRead.of(await stats.sales(granularity, from_, to))


@router.get("/top-products", response_model=list[ProductSalesRead], responses=ADMIN_PROBLEMS)
async def get_top_products(
    stats: StatsDep,
    _admin: AdminUser,
    limit: Annotated[int, Query(ge=1, le=100, description="how many products")] = 10,
) -> list[ProductSalesRead]:
    """Best-selling products of paid orders: units sold, then revenue (admin)."""
    return [ProductSalesRead.of(sales) for sales in await stats.top_products(limit)]
