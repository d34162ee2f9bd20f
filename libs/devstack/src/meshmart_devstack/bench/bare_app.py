"""The baseline: product detail and search in a bare FastAPI app, for the platform-layer ratio.

The same two queries as the product service, on the same database with the
same engine settings (``meshmart_common.db.create_engine``: SQLite pragmas or
the MySQL pool), answered with response models of the same shape. What it
leaves out is what MeshMart adds on top of FastAPI: the request-id and
metrics middleware, the problem+json error handlers, the per-request session
dependency with its commit/rollback rules, the ORM and the api -> domain ->
repository layers. ``make bench``
runs it in its own uvicorn process with the service's uvicorn options and
reports service throughput / bare throughput.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query
from pydantic import BaseModel
from sqlalchemy import RowMapping, text

from meshmart_common.db import create_engine


class CategoryRef(BaseModel):
    """The category a product belongs to."""

    id: int
    slug: str
    name: str


class StockRead(BaseModel):
    """Stock counters."""

    on_hand: int
    reserved: int
    available: int


class ProductRead(BaseModel):
    """Product detail, the shape the product service answers."""

    id: int
    sku: str
    title: str
    description: str
    price_cents: int
    currency: str
    category: CategoryRef
    image_url: str | None
    stock: StockRead
    rating_avg: float | None
    rating_count: int
    created_at: datetime
    updated_at: datetime
    deleted: bool


class ProductSummary(BaseModel):
    """A product in a list."""

    id: int
    sku: str
    title: str
    price_cents: int
    currency: str
    category: CategoryRef
    image_url: str | None
    available: int
    rating_avg: float | None
    rating_count: int
    created_at: datetime


class ProductPage(BaseModel):
    """One page of products."""

    items: list[ProductSummary]
    total: int
    page: int
    page_size: int


_COLUMNS = (
    "p.id, p.sku, p.title, p.description, p.price_cents, p.currency, p.image_url, "
    "p.on_hand, p.reserved, p.rating_count, p.rating_avg_x100, p.created_at, p.updated_at, "
    "p.deleted_at, c.id AS c_id, c.slug AS c_slug, c.name AS c_name"
)
_FROM = "FROM products AS p JOIN categories AS c ON c.id = p.category_id"
_SORTS = {
    "price": "p.price_cents",
    "rating": "p.rating_avg_x100",
    "created_at": "p.created_at",
    "title": "p.title",
}


def _utc(value: Any) -> datetime:
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _category(row: RowMapping) -> CategoryRef:
    return CategoryRef(id=row["c_id"], slug=row["c_slug"], name=row["c_name"])


def _rating(row: RowMapping) -> float | None:
    return row["rating_avg_x100"] / 100 if row["rating_count"] else None


def create_bare_app(database_url: str) -> FastAPI:
    """A FastAPI app serving GET /api/v1/products[/{id}] from ``database_url``."""
    # The service's engine settings (SQLite pragmas, MySQL pool), not its session rules.
    engine = create_engine(database_url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    app = FastAPI(title="bare product app (bench baseline)", lifespan=lifespan)

    @app.get("/api/v1/products/{product_id}", response_model=ProductRead)
    async def get_product(product_id: int) -> ProductRead:
        """Product detail."""
        async with engine.connect() as conn:
            result = await conn.execute(
                text(f"SELECT {_COLUMNS} {_FROM} WHERE p.id = :id"),
                {"id": product_id},
            )
            row = result.mappings().one_or_none()
        if row is None:
            raise HTTPException(404, "no such product")
        return ProductRead(
            id=row["id"],
            sku=row["sku"],
            title=row["title"],
            description=row["description"],
            price_cents=row["price_cents"],
            currency=row["currency"],
            category=_category(row),
            image_url=row["image_url"],
            stock=StockRead(
                on_hand=row["on_hand"],
                reserved=row["reserved"],
                available=row["on_hand"] - row["reserved"],
            ),
            rating_avg=_rating(row),
            rating_count=row["rating_count"],
            created_at=_utc(row["created_at"]),
            updated_at=_utc(row["updated_at"]),
            deleted=row["deleted_at"] is not None,
        )

    @app.get("/api/v1/products", response_model=ProductPage)
    async def search_products(
        q: str | None = None,
        category: str | None = None,
        min_price: int | None = None,
        max_price: int | None = None,
        sort: str = "-created_at",
        page: Annotated[int, Query(ge=1)] = 1,
        page_size: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> ProductPage:
        """Search live products (same filters and order as the service)."""
        where = ["p.deleted_at IS NULL"]
        params: dict[str, Any] = {}
        async with engine.connect() as conn:
            if category:
                found = await conn.execute(
                    text("SELECT id FROM categories WHERE slug = :slug"),
                    {"slug": category.strip().lower()},
                )
                category_id = found.scalar_one_or_none()
                if category_id is None:
                    return ProductPage(items=[], total=0, page=page, page_size=page_size)
                where.append("p.category_id = :category_id")
                params["category_id"] = category_id
            if q and q.strip():
                where.append(
                    "(lower(p.title) LIKE :q ESCAPE '/' OR lower(p.description) LIKE :q ESCAPE '/')"
                )
                escaped = q.strip().lower().replace("/", "//").replace("%", "/%").replace("_", "/_")
                params["q"] = f"%{escaped}%"
            if min_price is not None:
                where.append("p.price_cents >= :min_price")
                params["min_price"] = min_price
            if max_price is not None:
                where.append("p.price_cents <= :max_price")
                params["max_price"] = max_price
            condition = " AND ".join(where)
            direction = "DESC" if sort.startswith("-") else "ASC"
            column = _SORTS.get(sort.removeprefix("-"), "p.created_at")
            total = (
                await conn.execute(
                    # Only fixed fragments go into the SQL; every value is a bound parameter.
                    text(f"SELECT count(*) FROM products AS p WHERE {condition}"),  # noqa: S608
                    params,
                )
            ).scalar_one()
            rows = (
                await conn.execute(
                    text(
                        f"SELECT {_COLUMNS} {_FROM} WHERE {condition} "
                        f"ORDER BY {column} {direction}, p.id {direction} "
                        "LIMIT :limit OFFSET :offset"
                    ),
                    {**params, "limit": page_size, "offset": (page - 1) * page_size},
                )
            ).mappings()
            items = [
                ProductSummary(
                    id=row["id"],
                    sku=row["sku"],
                    title=row["title"],
                    price_cents=row["price_cents"],
                    currency=row["currency"],
                    category=_category(row),
                    image_url=row["image_url"],
                    available=row["on_hand"] - row["reserved"],
                    rating_avg=_rating(row),
                    rating_count=row["rating_count"],
                    created_at=_utc(row["created_at"]),
                )
                for row in rows
            ]
        return ProductPage(items=items, total=total, page=page, page_size=page_size)

    return app
