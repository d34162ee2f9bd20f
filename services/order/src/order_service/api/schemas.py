"""Request and response bodies of the order API.

Money is integer cents; request integers are strict, so 1.0, "1" or true are
rejected (422) instead of being coerced, and request bodies reject unknown
fields.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from meshmart_common.pagination import Page
from meshmart_common.schemas import RequestBody
from order_service.domain.cart import CartLineView, CartView
from order_service.domain.order_status import OrderStatus
from order_service.repository.models import Order, OrderLine

MAX_ID = 2**31 - 1
MAX_POINTS = 1_000_000_000
QUANTITY_LIMIT = 10_000
"""The most any MAX_QUANTITY_PER_LINE setting allows; the setting itself is checked too."""

VISIBLE_ASCII = r"^[\x21-\x7E]+$"

CouponCode = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=VISIBLE_ASCII),
    Field(description="a coupon code the customer claimed (trade checks it)", examples=["SAVE10"]),
]
Quantity = Annotated[
    int,
    Field(
        strict=True,
        ge=1,
        le=QUANTITY_LIMIT,
        description="units of the product, 1 to MAX_QUANTITY_PER_LINE (99 by default)",
        examples=[2],
    ),
]
Points = Annotated[
    int, Field(strict=True, ge=0, le=MAX_POINTS, description="loyalty points to spend")
]
AddressId = Annotated[
    int,
    Field(
        strict=True,
        ge=1,
        le=MAX_ID,
        description="an address id of the user service, stored as given (not checked here)",
    ),
]


# --- cart -----------------------------------------------------------------------------


class CartItemUpdate(RequestBody):
    """How many units of a product the cart should hold."""

    quantity: Quantity


class CartItemRead(BaseModel):
    """A cart line with the product's live title and price (last known when ``stale``)."""

    product_id: int
    quantity: int
    title: str
    unit_price_cents: int
    line_total_cents: int
    available: int | None = Field(
        description="units product can sell now; null when product could not be asked"
    )
    stale: bool = Field(description="product could not be asked: last known title and price")
    deleted: bool = Field(description="no longer sold: remove it before checking out")

    @classmethod
    def of(cls, line: CartLineView) -> CartItemRead:
        """Render a cart line."""
        return cls(
            product_id=line.product_id,
            quantity=line.quantity,
            title=line.title,
            unit_price_cents=line.unit_price_cents,
            line_total_cents=line.line_total_cents,
            available=line.available,
            stale=line.stale,
            deleted=line.deleted,
        )


class CartRead(BaseModel):
    """The caller's cart."""

    items: list[CartItemRead]
    subtotal_cents: int = Field(description="sum of the line totals, deleted products left out")
    currency: str
    stale: bool = Field(description="some lines show last known data")

    @classmethod
    def of(cls, cart: CartView) -> CartRead:
        """Render a cart."""
        return cls(
            items=[CartItemRead.of(line) for line in cart.lines],
            subtotal_cents=cart.subtotal_cents,
            currency=cart.currency,
            stale=cart.stale,
        )


# --- orders ---------------------------------------------------------------------------


class OrderCreate(RequestBody):
    """Checkout options; the lines come from the cart."""

    coupon_code: CouponCode | None = None
    points_to_redeem: Points = 0
    address_id: AddressId | None = None


class OrderLineRead(BaseModel):
    """One product of an order at the price it was sold for."""

    product_id: int
    title: str
    unit_price_cents: int
    quantity: int
    line_total_cents: int

    @classmethod
    def of(cls, line: OrderLine) -> OrderLineRead:
        """Render an order line."""
        return cls(
            product_id=line.product_id,
            title=line.title,
            unit_price_cents=line.unit_price_cents,
            quantity=line.quantity,
            line_total_cents=line.line_total_cents,
        )


class OrderRead(BaseModel):
    """An order: total = subtotal - discount (coupon) - points discount."""

    id: int
    user_id: int
    status: OrderStatus
    lines: list[OrderLineRead]
    currency: str
    subtotal_cents: int
    discount_cents: int = Field(description="the coupon's discount")
    points_redeemed: int
    points_discount_cents: int = Field(description="what the redeemed points take off")
    total_cents: int
    coupon_code: str | None
    address_id: int | None
    created_at: datetime
    updated_at: datetime
    pay_by: datetime | None = Field(description="AWAITING_PAYMENT orders: pay before this")
    paid_at: datetime | None
    shipped_at: datetime | None
    completed_at: datetime | None
    cancelled_at: datetime | None
    cancellation_reason: str | None = Field(
        description="payment_timeout, cancelled_by_customer or cancelled_by_admin"
    )
    rejection_reason: str | None = Field(description="why stock or trade said no")

    @classmethod
    def of(cls, order: Order) -> OrderRead:
        """Render an order."""
        return cls(
            id=order.id,
            user_id=order.user_id,
            status=OrderStatus(order.status),
            lines=[OrderLineRead.of(line) for line in order.lines],
            currency=order.currency,
            subtotal_cents=order.subtotal_cents,
            discount_cents=order.discount_cents,
            points_redeemed=order.points_redeemed,
            points_discount_cents=order.points_discount_cents,
            total_cents=order.total_cents,
            coupon_code=order.coupon_code,
            address_id=order.address_id,
            created_at=order.created_at,
            updated_at=order.updated_at,
            pay_by=order.pay_by,
            paid_at=order.paid_at,
            shipped_at=order.shipped_at,
            completed_at=order.completed_at,
            cancelled_at=order.cancelled_at,
            cancellation_reason=order.cancellation_reason,
            rejection_reason=order.rejection_reason,
        )


class OrderPage(Page[OrderRead]):
    """One page of orders, newest first."""
