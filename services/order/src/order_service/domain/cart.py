"""Carts: what a customer means to buy, shown with live titles and prices from product."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.errors import Conflict, NotFound, ValidationFailed
from meshmart_common.service_client import UpstreamError
from order_service.domain.clock import Clock
from order_service.domain.ports import CURRENCY, ProductCatalogue, ProductSnapshot
from order_service.repository.carts import CartRepository
from order_service.repository.models import CartItem


@dataclass(frozen=True, slots=True)
class CartLineView:
    """One cart line as the customer sees it.

    ``stale``: product could not be asked, so title and price are the last
    ones seen and ``available`` is unknown (None). ``deleted``: the product is
    no longer sold; the line stays until removed but cannot be checked out and
    is left out of the subtotal.
    """

    product_id: int
    quantity: int
    title: str
    unit_price_cents: int
    available: int | None
    stale: bool
    deleted: bool

    @property
    def line_total_cents(self) -> int:
        """Unit price times quantity."""
        return self.unit_price_cents * self.quantity


@dataclass(frozen=True, slots=True)
class CartView:
    """A cart: its lines in the order they were added and what they come to."""

    lines: list[CartLineView]
    currency: str = CURRENCY

    @property
    def subtotal_cents(self) -> int:
        """The sum of the line totals, deleted products left out."""
        return sum(line.line_total_cents for line in self.lines if not line.deleted)

    @property
    def stale(self) -> bool:
        """True when any line shows last-known data."""
        return any(line.stale for line in self.lines)


def _line_view(item: CartItem, found: ProductSnapshot | UpstreamError | None) -> CartLineView:
    if isinstance(found, UpstreamError):
        return CartLineView(
            product_id=item.product_id,
            quantity=item.quantity,
            title=item.title,
            unit_price_cents=item.unit_price_cents,
            available=None,
            stale=True,
            deleted=False,
        )
    if found is None:  # unknown to product: it can only have gone for good
        return CartLineView(
            product_id=item.product_id,
            quantity=item.quantity,
            title=item.title,
            unit_price_cents=item.unit_price_cents,
            available=0,
            stale=False,
            deleted=True,
        )
    return CartLineView(
        product_id=item.product_id,
        quantity=item.quantity,
        title=found.title,
        unit_price_cents=found.price_cents,
        available=0 if found.deleted else max(found.available, 0),
        stale=False,
        deleted=found.deleted,
    )


async def look_up_products(
    catalogue: ProductCatalogue, product_ids: Sequence[int]
) -> list[ProductSnapshot | UpstreamError | None]:
    """Ask product about every id at once; an UpstreamError in place of each failed answer."""

    async def one(product_id: int) -> ProductSnapshot | UpstreamError | None:
        try:
            return await catalogue.find(product_id)
        except UpstreamError as exc:
            return exc

    return list(await asyncio.gather(*(one(product_id) for product_id in product_ids)))


class CartService:
    """Reads and edits a customer's cart (one cart per user; lines keyed by product)."""

    def __init__(
        self,
        session: AsyncSession,
        catalogue: ProductCatalogue,
        *,
        clock: Clock,
        max_lines: int,
        max_quantity: int,
    ) -> None:
        self.carts = CartRepository(session)
        self.catalogue = catalogue
        self.clock = clock
        self.max_lines = max_lines
        self.max_quantity = max_quantity

    async def view(
        self, user_id: int, *, known: Mapping[int, ProductSnapshot] | None = None
    ) -> CartView:
        """The user's cart with live titles, prices and stock.

        Products are asked concurrently (``known`` ones are not asked again).
        When product cannot answer for a line, that line shows the last title
        and price seen and is marked stale: reading a cart never fails
        because product is down.
        """
        items = await self.carts.lines(user_id)
        known = known or {}
        to_ask = [item.product_id for item in items if item.product_id not in known]
        answers = dict(zip(to_ask, await look_up_products(self.catalogue, to_ask), strict=True))
        return CartView(
            lines=[
                _line_view(item, known.get(item.product_id, answers.get(item.product_id)))
                for item in items
            ]
        )

    async def set_quantity(self, user_id: int, product_id: int, quantity: int) -> CartView:
        """Put ``quantity`` units of a product in the cart (adding the line or replacing it).

        NotFound for an unknown or deleted product; an UpstreamError (503/504/502)
        when product cannot be asked, because an unchecked product id would
        only fail later at checkout.
        """
        if quantity > self.max_quantity:
            raise ValidationFailed(
                f"At most {self.max_quantity} units of one product fit in a cart.",
                errors=[
                    {
                        "field": "quantity",
                        "location": "body",
                        "message": f"must be at most {self.max_quantity}",
                        "type": "less_than_equal",
                    }
                ],
            )
        product = await self.catalogue.find(product_id)
        if product is None or product.deleted:
            raise NotFound(f"Product {product_id} does not exist.")
        if product.currency != CURRENCY:
            raise ValidationFailed(
                f"Product {product_id} is priced in {product.currency}; carts are in {CURRENCY}."
            )
        is_new = await self.carts.get(user_id, product_id) is None
        if is_new and await self.carts.count(user_id) >= self.max_lines:
            raise Conflict(f"The cart already holds {self.max_lines} products; remove one first.")
        await self.carts.put(
            user_id=user_id,
            product_id=product_id,
            quantity=quantity,
            title=product.title,
            unit_price_cents=product.price_cents,
            now=self.clock.now(),
        )
        return await self.view(user_id, known={product_id: product})

    async def remove(self, user_id: int, product_id: int) -> CartView:
        """Take a product out of the cart; NotFound when it is not in it."""
        if not await self.carts.remove(user_id, product_id):
            raise NotFound(f"Product {product_id} is not in the cart.")
        return await self.view(user_id)

    async def clear(self, user_id: int) -> None:
        """Empty the cart (an empty cart stays empty)."""
        await self.carts.clear(user_id)
