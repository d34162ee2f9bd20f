"""What the order domain needs from the product and trade services, as plain values.

The api layer hands the domain implementations that call those services over
REST (order_service.gateways); tests can hand it anything that fits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

CURRENCY = "USD"
"""The one currency of MeshMart for now; every amount is integer cents of it."""


@dataclass(frozen=True, slots=True)
class ProductSnapshot:
    """A product as the product service describes it right now."""

    product_id: int
    title: str
    price_cents: int
    currency: str
    available: int
    deleted: bool


@dataclass(frozen=True, slots=True)
class QuoteRequest:
    """What checkout asks trade to price."""

    subtotal_cents: int
    coupon_code: str | None
    points_to_redeem: int


@dataclass(frozen=True, slots=True)
class Quote:
    """Trade's price for a subtotal: the coupon discount, the points discount and the total."""

    subtotal_cents: int
    coupon_code: str | None
    discount_cents: int
    points_to_redeem: int
    points_discount_cents: int
    total_cents: int


class ProductCatalogue(Protocol):
    """Current titles, prices and stock of products."""

    async def find(self, product_id: int) -> ProductSnapshot | None:
        """The product (soft-deleted ones too, with ``deleted``), or None when unknown.

        Raises an UpstreamError (503, 504, 502) when product cannot answer.
        """
        ...


class QuoteProvider(Protocol):
    """Prices a checkout: coupon and points."""

    async def quote(self, request: QuoteRequest) -> Quote:
        """Trade's quote; ValidationFailed (with field errors) when it refuses the coupon or
        points, an UpstreamError when trade cannot answer."""
        ...
