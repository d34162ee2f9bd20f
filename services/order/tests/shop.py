"""Test helpers that act like a customer through the real order API."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import count
from typing import Any

from httpx import AsyncClient, Response

from meshmart_common.events import StockReserved, TradeLocked
from services.order.tests.events import SagaDelivery
from services.order.tests.stubs import ProductStub, StubProduct


@dataclass
class Shop:
    """Test helpers that go through the real API: fill a cart, check out."""

    api: AsyncClient
    products: ProductStub
    numbers: count[int]

    def product(self, price_cents: int = 1000, **fields: Any) -> StubProduct:
        """List a product at product."""
        title = fields.pop("title", None) or f"Product {next(self.numbers)}"
        return self.products.add(title, price_cents, **fields)

    async def put(self, headers: dict[str, str], product_id: int, quantity: int) -> None:
        """Put ``quantity`` units in the cart of the user of ``headers``."""
        response = await self.api.put(
            f"/api/v1/cart/items/{product_id}", json={"quantity": quantity}, headers=headers
        )
        assert response.status_code == 200, response.text

    async def order(
        self,
        headers: dict[str, str],
        *lines: tuple[int, int],
        key: str | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """Fill the cart with ``lines`` (price, quantity) and check out; the new order."""
        for price, quantity in lines or ((1000, 1),):
            await self.put(headers, self.product(price).id, quantity)
        extra = {"Idempotency-Key": key} if key else {}
        response = await self.api.post("/api/v1/orders", json=options, headers={**headers, **extra})
        assert response.status_code == 201, response.text
        order: dict[str, Any] = response.json()
        return order


async def held(deliver: SagaDelivery, order: dict[str, Any]) -> None:
    """Both saga holds in: the order awaits payment."""
    await deliver(StockReserved(order_id=order["id"]))
    await deliver(
        TradeLocked(
            order_id=order["id"],
            coupon_code=order["coupon_code"],
            discount_cents=order["discount_cents"],
            points_locked=order["points_redeemed"],
        )
    )


async def act(
    api: AsyncClient, action: str, order: dict[str, Any], headers: dict[str, str]
) -> Response:
    """POST /api/v1/orders/{id}/{action} (pay, cancel, ship, complete) as ``headers``."""
    return await api.post(f"/api/v1/orders/{order['id']}/{action}", headers=headers)
