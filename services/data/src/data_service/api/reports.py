"""Routes /api/v1/reports: the daily report as JSON or CSV (admin)."""

from __future__ import annotations

import csv
import io
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Query, Response

from data_service.api.deps import ADMIN_PROBLEMS, StatsDep
from data_service.api.schemas import DailyReportRead, Day
from data_service.domain.stats import DailyReport
from meshmart_common.auth import AdminUser
from meshmart_common.db import utc_now

router = APIRouter(prefix="/reports", tags=["reports"])

CSV_MEDIA_TYPE = "text/csv"
CSV_COLUMNS = ("metric", "rank", "product_id", "title", "value")
"""The daily CSV's header row; see :func:`get_daily_report` for the rows."""

# Spreadsheets run a cell starting with one of these as a formula (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class ReportFormat(StrEnum):
    """How a report is rendered."""

    JSON = "json"
    CSV = "csv"


def _cell(text: str | None) -> str:
    if text is None:
        return ""
    return f"'{text}" if text.startswith(_FORMULA_STARTS) else text


def daily_report_csv(report: DailyReport) -> str:
    """The daily report as CSV rows of ``CSV_COLUMNS`` (RFC 4180, CRLF line ends)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    summary: list[tuple[str, object]] = [
        ("date", report.day.isoformat()),
        ("orders_created", report.orders_created),
        ("orders_paid", report.orders_paid),
        ("orders_cancelled", report.orders_cancelled),
        ("orders_rejected", report.orders_rejected),
        ("gmv_cents", report.gmv_cents),
        ("new_users", report.new_users),
    ]
    for metric, value in summary:
        writer.writerow((metric, "", "", "", value))
    for rank, product in enumerate(report.top_products, start=1):
        title = _cell(product.title)
        writer.writerow(("units_sold", rank, product.product_id, title, product.units_sold))
        writer.writerow(("revenue_cents", rank, product.product_id, title, product.revenue_cents))
    return out.getvalue()


@router.get(
    "/daily",
    response_model=DailyReportRead,
    responses={
        200: {
            "description": "The report as JSON, or as a CSV attachment with format=csv",
            "content": {CSV_MEDIA_TYPE: {"schema": {"type": "string"}}},
        },
        **ADMIN_PROBLEMS,
    },
)
async def get_daily_report(
    stats: StatsDep,
    _admin: AdminUser,
    date: Annotated[Day | None, Query(description="the UTC day; default: today")] = None,
    format: Annotated[ReportFormat, Query(description="json or csv")] = ReportFormat.JSON,
) -> DailyReportRead | Response:
    """One UTC day's orders created/paid/cancelled/rejected, GMV, new users, top products (admin).

    With format=csv the body is text/csv, sent as the attachment
    meshmart-daily-<date>.csv, with the header row
    `metric,rank,product_id,title,value` and one row per metric, always in this
    order: date, orders_created, orders_paid, orders_cancelled,
    orders_rejected, gmv_cents, new_users (rank, product_id and title empty);
    then, for each of the top 10 products by rank, a units_sold row and a
    revenue_cents row (rank from 1, product_id, title, value). A title that a
    spreadsheet would run as a formula is prefixed with an apostrophe.
    """
    report = await stats.daily_report(date if date is not None else utc_now().date())
    if format is ReportFormat.JSON:
        return DailyReportRead.of(report)
    filename = f"meshmart-daily-{report.day.isoformat()}.csv"
    return Response(
        daily_report_csv(report),
        media_type=f"{CSV_MEDIA_TYPE}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
