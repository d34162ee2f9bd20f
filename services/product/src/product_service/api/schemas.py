"""Request and response bodies of the product API.

Money is integer cents; request integers are strict, so 19.99, "1999" or
true are rejected (422) instead of being truncated or coerced.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    HttpUrl,
    StringConstraints,
    TypeAdapter,
    field_validator,
)

from meshmart_common.pagination import Page
from meshmart_common.schemas import RequestBody
from product_service.repository.models import Category, Product, Review

MAX_PRICE_CENTS = 100_000_000
MAX_STOCK = 1_000_000_000
MAX_ID = 2**31 - 1


def _valid_unicode(value: str) -> str:
    # json.loads accepts lone surrogates ("\ud800"), which no database can
    # store, and NUL, which SQLite's string functions treat as the end.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode text") from exc
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


_http_url: TypeAdapter[HttpUrl] = TypeAdapter(HttpUrl)


def _http_url_text(value: str) -> str:
    # Validate as a URL but keep the caller's spelling (HttpUrl would add a "/").
    url = _http_url.validate_python(value)
    if url.scheme not in ("http", "https"):
        raise ValueError("must be an http or https URL")
    return value


Sku = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9-]{3,32}$"), Field(examples=["EL-1001"])]
Slug = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9-]{1,64}$"), Field(examples=["electronics"])
]
Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_valid_unicode),
]
CategoryName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_valid_unicode),
]
CategoryDescription = Annotated[
    str, StringConstraints(max_length=500), AfterValidator(_valid_unicode)
]
Description = Annotated[str, StringConstraints(max_length=5000), AfterValidator(_valid_unicode)]
ImageUrl = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
    AfterValidator(_http_url_text),
    Field(examples=["https://images.example.com/p/el-1001.jpg"]),
]
PriceCents = Annotated[
    int,
    Field(
        strict=True,
        gt=0,
        le=MAX_PRICE_CENTS,
        description="price in integer cents (1999 = 19.99 USD)",
        examples=[1999],
    ),
]
StockUnits = Annotated[int, Field(strict=True, ge=0, le=MAX_STOCK)]
CategoryId = Annotated[int, Field(strict=True, ge=1, le=MAX_ID)]
Rating = Annotated[int, Field(strict=True, ge=1, le=5, description="stars, 1 to 5")]
ReviewTitle = Annotated[str, StringConstraints(max_length=120), AfterValidator(_valid_unicode)]
ReviewBody = Annotated[str, StringConstraints(max_length=2000), AfterValidator(_valid_unicode)]


# --- categories ---------------------------------------------------------------


class CategoryCreate(RequestBody):
    """A new category."""

    slug: Slug
    name: CategoryName
    description: CategoryDescription = ""


class CategoryRead(BaseModel):
    """A category."""

    id: int
    slug: str
    name: str
    description: str

    @classmethod
    def of(cls, category: Category) -> CategoryRead:
        """Render a category."""
        return cls(
            id=category.id,
            slug=category.slug,
            name=category.name,
            description=category.description,
        )


class CategoryRef(BaseModel):
    """The category a product belongs to."""

    id: int
    slug: str
    name: str

    @classmethod
    def of(cls, category: Category) -> CategoryRef:
        """Render a category reference."""
        return cls(id=category.id, slug=category.slug, name=category.name)


# --- products -----------------------------------------------------------------


class ProductCreate(RequestBody):
    """A new product (admin)."""

    sku: Sku
    title: Title
    description: Description = ""
    price_cents: PriceCents
    currency: Literal["USD"] = Field(default="USD", description="only USD for now")
    category_id: CategoryId
    image_url: ImageUrl | None = None
    stock: StockUnits = Field(default=0, description="initial units on hand")


_NOT_NULLABLE = ("sku", "title", "description", "price_cents", "category_id")


class ProductUpdate(RequestBody):
    """A partial edit (admin): only the fields sent change; image_url null clears it."""

    sku: Sku | None = None
    title: Title | None = None
    description: Description | None = None
    price_cents: PriceCents | None = None
    category_id: CategoryId | None = None
    image_url: ImageUrl | None = None

    @field_validator(*_NOT_NULLABLE)
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Only runs on values actually sent: an explicit null is an error.
        if value is None:
            raise ValueError("may be left out but not null")
        return value


class StockUpdate(RequestBody):
    """New units on hand (admin); must not fall below the reserved units."""

    on_hand: StockUnits


class StockRead(BaseModel):
    """Stock counters: available = on_hand - reserved."""

    on_hand: int
    reserved: int
    available: int


class ProductSummary(BaseModel):
    """A product in a list."""

    id: int
    sku: str
    title: str
    price_cents: int
    currency: str
    category: CategoryRef
    image_url: str | None
    available: int = Field(description="units that can be ordered now")
    rating_avg: float | None = Field(description="average stars, 2 decimals; null: no reviews")
    rating_count: int
    created_at: datetime

    @classmethod
    def of(cls, product: Product) -> ProductSummary:
        """Render a product for a list."""
        return cls(
            id=product.id,
            sku=product.sku,
            title=product.title,
            price_cents=product.price_cents,
            currency=product.currency,
            category=CategoryRef.of(product.category),
            image_url=product.image_url,
            available=product.available,
            rating_avg=product.rating_avg,
            rating_count=product.rating_count,
            created_at=product.created_at,
        )


class ProductRead(BaseModel):
    """A product with its stock and rating."""

    id: int
    sku: str
    title: str
    description: str
    price_cents: int
    currency: str
    category: CategoryRef
    image_url: str | None
    stock: StockRead
    rating_avg: float | None = Field(description="average stars, 2 decimals; null: no reviews")
    rating_count: int
    created_at: datetime
    updated_at: datetime
    deleted: bool = Field(description="soft-deleted: hidden from lists, still readable by id")

    @classmethod
    def of(cls, product: Product) -> ProductRead:
        """Render a product."""
        return cls(
            id=product.id,
            sku=product.sku,
            title=product.title,
            description=product.description,
            price_cents=product.price_cents,
            currency=product.currency,
            category=CategoryRef.of(product.category),
            image_url=product.image_url,
            stock=StockRead(
                on_hand=product.on_hand, reserved=product.reserved, available=product.available
            ),
            rating_avg=product.rating_avg,
            rating_count=product.rating_count,
            created_at=product.created_at,
            updated_at=product.updated_at,
            deleted=product.is_deleted,
        )


class ProductPage(Page[ProductSummary]):
    """One page of products."""


# --- reviews ------------------------------------------------------------------


class ReviewCreate(RequestBody):
    """A review (any signed-in user, once per product)."""

    rating: Rating
    title: ReviewTitle | None = None
    body: ReviewBody | None = None


class ReviewRead(BaseModel):
    """A review."""

    id: int
    product_id: int
    user_id: int
    author: str
    rating: int
    title: str | None
    body: str | None
    verified: bool = Field(description="the author bought the product")
    created_at: datetime

    @classmethod
    def of(cls, review: Review) -> ReviewRead:
        """Render a review."""
        return cls(
            id=review.id,
            product_id=review.product_id,
            user_id=review.user_id,
            author=review.author,
            rating=review.rating,
            title=review.title,
            body=review.body,
            verified=review.verified,
            created_at=review.created_at,
        )


class ReviewPage(Page[ReviewRead]):
    """One page of reviews."""
