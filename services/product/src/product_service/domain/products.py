"""Products: catalogue rules for search, admin edits, soft delete and stock.

Every change is published in its own transaction through the outbox:
product.created, product.updated (edits and the soft delete, ``deleted``
true) and stock.changed (``reason`` "adjusted") for the admin's stock level.
Given an audit context (an admin's request), a change also records its
audit entry (admin.product.created/updated/deleted, admin.stock.adjusted)
in that transaction; the seeder gives none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TypedDict, cast

from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.audit import AuditContext, AuditDetails
from meshmart_common.db import utc_now
from meshmart_common.errors import Conflict, NotFound, ValidationFailed
from meshmart_common.events import AuditAction
from meshmart_common.messaging.outbox import EventPublisher
from product_service.events.publishing import (
    StockChangeReason,
    product_created,
    product_updated,
    publish,
    stock_changed,
)
from product_service.repository.categories import CategoryRepository
from product_service.repository.errors import DuplicateKey
from product_service.repository.models import Category, Product
from product_service.repository.products import ProductFilter, ProductRepository, SortKey

CURRENCY = "USD"
"""The one currency of the catalogue for now; prices are integer cents of it."""

MAX_ID = 2**31 - 1


class ProductSort(StrEnum):
    """Orders a product list can take; a leading "-" means descending."""

    PRICE = "price"
    PRICE_DESC = "-price"
    RATING = "rating"
    RATING_DESC = "-rating"
    CREATED_AT = "created_at"
    CREATED_AT_DESC = "-created_at"
    TITLE = "title"

    @property
    def key(self) -> SortKey:
        """The attribute sorted on."""
        return cast(SortKey, self.value.removeprefix("-"))

    @property
    def descending(self) -> bool:
        """True for the "-" orders."""
        return self.value.startswith("-")


@dataclass(frozen=True, slots=True)
class ProductQuery:
    """A catalogue search: every criterion optional, one page of results."""

    text: str | None = None
    category: str | None = None
    min_price: int | None = None
    max_price: int | None = None
    sort: ProductSort = ProductSort.CREATED_AT_DESC
    page: int = 1
    page_size: int = 20


@dataclass(frozen=True, slots=True)
class NewProduct:
    """What an admin gives to list a product."""

    sku: str
    title: str
    price_cents: int
    category_id: int
    description: str = ""
    image_url: str | None = None
    stock: int = 0


class ProductChanges(TypedDict, total=False):
    """A partial edit: only the keys present change (image_url may be None to clear it)."""

    sku: str
    title: str
    description: str
    price_cents: int
    category_id: int
    image_url: str | None


def _unknown_category(category_id: int) -> ValidationFailed:
    return ValidationFailed(
        f"Category {category_id} does not exist.",
        errors=[{"field": "category_id", "message": f"category {category_id} does not exist"}],
    )


def _duplicate_sku(sku: str) -> Conflict:
    return Conflict(f"A product with sku {sku!r} already exists.")


class ProductService:
    """Catalogue operations on products.

    Reads need only a session; changes also need the ``publisher`` their
    events go out through (a RuntimeError without one, never a silent change).
    """

    def __init__(self, session: AsyncSession, publisher: EventPublisher | None = None) -> None:
        self.session = session
        self.publisher = publisher
        self.products = ProductRepository(session)
        self.categories = CategoryRepository(session)

    def _events(self) -> EventPublisher:
        if self.publisher is None:
            raise RuntimeError("changing products needs an EventPublisher for their events")
        return self.publisher

    async def _audit(
        self,
        events: EventPublisher,
        audit: AuditContext | None,
        action: AuditAction,
        product: Product,
        details: AuditDetails,
    ) -> None:
        """The admin's audit entry for ``product``, in the change's transaction (none unaudited)."""
        if audit is not None:
            entry = audit.entry(
                action, target_type="product", target_id=product.id, details=details
            )
            await publish(self.session, events, entry)

    async def search(self, query: ProductQuery) -> tuple[Sequence[Product], int]:
        """One page of live products matching ``query``, and the number matching in all.

        ``category`` is a slug or a numeric id; an unknown one matches nothing.
        """
        if (
            query.min_price is not None
            and query.max_price is not None
            and query.min_price > query.max_price
        ):
            raise ValidationFailed(
                "min_price must not be greater than max_price.",
                errors=[
                    {"field": "min_price", "message": "must not be greater than max_price"},
                ],
            )
        category_id: int | None = None
        if query.category:
            category = await self._find_category(query.category)
            if category is None:
                return [], 0
            category_id = category.id
        text = query.text.strip() if query.text else None
        return await self.products.search(
            ProductFilter(
                text=text or None,
                category_id=category_id,
                min_price=query.min_price,
                max_price=query.max_price,
            ),
            sort=query.sort.key,
            descending=query.sort.descending,
            offset=(query.page - 1) * query.page_size,
            limit=query.page_size,
        )

    async def _find_category(self, ref: str) -> Category | None:
        category = await self.categories.get_by_slug(ref)
        if category is None and ref.isascii() and ref.isdigit() and int(ref) <= MAX_ID:
            category = await self.categories.get(int(ref))
        return category

    async def get(self, product_id: int) -> Product:
        """The product, soft-deleted or not (old orders still show it); NotFound otherwise."""
        product = await self.products.get(product_id)
        if product is None:
            raise NotFound(f"Product {product_id} does not exist.")
        return product

    async def get_live(self, product_id: int) -> Product:
        """The product unless unknown or soft-deleted (NotFound)."""
        product = await self.get(product_id)
        if product.is_deleted:
            raise NotFound(f"Product {product_id} does not exist.")
        return product

    async def create(self, data: NewProduct, *, audit: AuditContext | None = None) -> Product:
        """List a new product; ValidationFailed: unknown category; Conflict: sku taken."""
        events = self._events()
        category = await self.categories.get(data.category_id)
        if category is None:
            raise _unknown_category(data.category_id)
        if await self.products.get_by_sku(data.sku) is not None:
            raise _duplicate_sku(data.sku)
        now = utc_now()
        product = Product(
            sku=data.sku,
            title=data.title,
            description=data.description,
            price_cents=data.price_cents,
            currency=CURRENCY,
            category=category,
            image_url=data.image_url,
            on_hand=data.stock,
            reserved=0,
            rating_sum=0,
            rating_count=0,
            rating_avg_x100=0,
            created_at=now,
            updated_at=now,
        )
        try:
            await self.products.add(product)
        except DuplicateKey as exc:
            raise _duplicate_sku(data.sku) from exc
        await publish(self.session, events, product_created(product))
        await self._audit(
            events,
            audit,
            AuditAction.PRODUCT_CREATED,
            product,
            {"sku": product.sku, "price_cents": product.price_cents},
        )
        return product

    async def update(
        self, product_id: int, changes: ProductChanges, *, audit: AuditContext | None = None
    ) -> Product:
        """Apply a partial edit to a live product."""
        events = self._events()
        product = await self.get_live(product_id)
        if "category_id" in changes and changes["category_id"] != product.category_id:
            category = await self.categories.get(changes["category_id"])
            if category is None:
                raise _unknown_category(changes["category_id"])
            product.category = category
        if "sku" in changes and changes["sku"] != product.sku:
            if await self.products.get_by_sku(changes["sku"]) is not None:
                raise _duplicate_sku(changes["sku"])
            product.sku = changes["sku"]
        if "title" in changes:
            product.title = changes["title"]
        if "description" in changes:
            product.description = changes["description"]
        if "price_cents" in changes:
            product.price_cents = changes["price_cents"]
        if "image_url" in changes:
            product.image_url = changes["image_url"]
        product.updated_at = utc_now()
        try:
            await self.products.flush()
        except DuplicateKey as exc:
            raise _duplicate_sku(product.sku) from exc
        await publish(self.session, events, product_updated(product))
        # Which fields were sent (names from a fixed set), not their values.
        await self._audit(
            events,
            audit,
            AuditAction.PRODUCT_UPDATED,
            product,
            {"fields": ",".join(sorted(changes))},
        )
        return product

    async def delete(self, product_id: int, *, audit: AuditContext | None = None) -> None:
        """Soft-delete a live product: hidden from search, still readable by id.

        Units still reserved stay reserved: orders holding them are settled by
        their own release or commit.
        """
        events = self._events()
        product = await self.get_live(product_id)
        now = utc_now()
        product.deleted_at = now
        product.updated_at = now
        await self.products.flush()
        await publish(self.session, events, product_updated(product))
        await self._audit(events, audit, AuditAction.PRODUCT_DELETED, product, {"sku": product.sku})

    async def set_stock(
        self, product_id: int, on_hand: int, *, audit: AuditContext | None = None
    ) -> Product:
        """Set the units on hand; Conflict when fewer than are reserved for orders."""
        events = self._events()
        product = await self.get_live(product_id)
        previous_on_hand = product.on_hand
        if on_hand < product.reserved:
            raise Conflict(
                f"on_hand {on_hand} is below the {product.reserved} units reserved for orders."
            )
        if not await self.products.set_on_hand(product, on_hand, now=utc_now()):
            if product.is_deleted:
                raise NotFound(f"Product {product_id} does not exist.")
            raise Conflict(
                f"on_hand {on_hand} is below the {product.reserved} units reserved for orders."
            )
        await publish(
            self.session,
            events,
            stock_changed(
                product.id, product.on_hand, product.reserved, StockChangeReason.ADJUSTED
            ),
        )
        await self._audit(
            events,
            audit,
            AuditAction.STOCK_ADJUSTED,
            product,
            {"on_hand": product.on_hand, "previous_on_hand": previous_on_hand},
        )
        return product
