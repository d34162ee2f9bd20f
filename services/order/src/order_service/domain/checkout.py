"""Checkout: turn the cart into a PENDING order at current prices, once per Idempotency-Key."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.errors import Conflict, ValidationFailed
from meshmart_common.events import OrderCreated
from meshmart_common.events import OrderLine as EventOrderLine
from order_service.domain.cart import look_up_products
from order_service.domain.clock import Clock
from order_service.domain.order_status import OrderStatus
from order_service.domain.outbox_port import OutgoingEvent
from order_service.domain.ports import (
    CURRENCY,
    ProductCatalogue,
    ProductSnapshot,
    QuoteProvider,
    QuoteRequest,
)
from order_service.repository.carts import CartRepository
from order_service.repository.errors import DuplicateKey
from order_service.repository.models import Order, OrderLine
from order_service.repository.orders import OrderRepository

logger = logging.getLogger("order.checkout")


@dataclass(frozen=True, slots=True)
class CheckoutRequest:
    """What the customer asks for at checkout besides the cart."""

    coupon_code: str | None = None
    points_to_redeem: int = 0
    address_id: int | None = None

    def fingerprint(self) -> str:
        """A digest of the request, to tell a retry from a different request with the same key."""
        canonical = json.dumps(
            {
                "coupon_code": self.coupon_code,
                "points_to_redeem": self.points_to_redeem,
                "address_id": self.address_id,
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class CheckoutResult:
    """The order of a checkout; ``created`` is False when a retry found it already made."""

    order: Order
    created: bool
    events: list[OutgoingEvent]


def order_created(order: Order) -> OrderCreated:
    """The order.created payload of a just-stored order."""
    return OrderCreated(
        order_id=order.id,
        user_id=order.user_id,
        lines=[
            EventOrderLine(
                product_id=line.product_id,
                quantity=line.quantity,
                unit_price_cents=line.unit_price_cents,
            )
            for line in order.lines
        ],
        subtotal_cents=order.subtotal_cents,
        discount_cents=order.discount_cents,
        points_to_redeem=order.points_redeemed,
        total_cents=order.total_cents,
        coupon_code=order.coupon_code,
        created_at=order.created_at,
    )


class CheckoutService:
    """Places orders from carts."""

    def __init__(
        self,
        session: AsyncSession,
        catalogue: ProductCatalogue,
        quotes: QuoteProvider,
        *,
        clock: Clock,
    ) -> None:
        self.carts = CartRepository(session)
        self.orders = OrderRepository(session)
        self.catalogue = catalogue
        self.quotes = quotes
        self.clock = clock

    async def place_order(
        self, user_id: int, request: CheckoutRequest, *, idempotency_key: str | None = None
    ) -> CheckoutResult:
        """Store the cart as a PENDING order at current prices and empty the cart.

        Prices come from product now (an UpstreamError when it cannot answer:
        nothing is sold at an unknown price), the discounts from a trade quote
        (ValidationFailed with trade's field errors when it refuses the coupon
        or points). Conflict: empty cart, a product no longer sold, or a cart
        changed by a concurrent request. Stock is not checked here: product
        reserves it in the saga and may still reject the order.

        With an ``idempotency_key``, the user's earlier order with that key is
        returned instead (``created`` False), also when the earlier request is
        still running; ValidationFailed when the key came with another request.
        The returned events are for the caller to hand to the outbox.
        """
        if idempotency_key is not None:
            earlier = await self.orders.find_by_idempotency_key(user_id, idempotency_key)
            if earlier is not None:
                return self._replay(earlier, request)

        items = await self.carts.lines(user_id)
        if not items:
            if idempotency_key is not None:
                # The earlier request may have committed (and emptied the
                # cart) between the look-up above and this read.
                earlier = await self.orders.find_by_idempotency_key(user_id, idempotency_key)
                if earlier is not None:
                    return self._replay(earlier, request)
            raise Conflict("The cart is empty.")

        answers = await look_up_products(self.catalogue, [item.product_id for item in items])
        products: dict[int, ProductSnapshot] = {}
        gone: list[int] = []
        for item, answer in zip(items, answers, strict=True):
            if isinstance(answer, Exception):
                raise answer
            if answer is None or answer.deleted:
                gone.append(item.product_id)
            elif answer.currency != CURRENCY:
                raise Conflict(
                    f"Product {item.product_id} is priced in {answer.currency}; "
                    f"orders are in {CURRENCY}."
                )
            else:
                products[item.product_id] = answer
        if gone:
            raise Conflict(
                "No longer sold: product "
                + ", ".join(str(product_id) for product_id in gone)
                + ". Remove them from the cart to check out."
            )

        lines = [
            OrderLine(
                product_id=item.product_id,
                title=products[item.product_id].title,
                unit_price_cents=products[item.product_id].price_cents,
                quantity=item.quantity,
                line_total_cents=products[item.product_id].price_cents * item.quantity,
            )
            for item in items
        ]
        subtotal = sum(line.line_total_cents for line in lines)
        quote = await self.quotes.quote(
            QuoteRequest(
                subtotal_cents=subtotal,
                coupon_code=request.coupon_code,
                points_to_redeem=request.points_to_redeem,
            )
        )

        now = self.clock.now()
        order = Order(
            user_id=user_id,
            status=OrderStatus.PENDING.value,
            currency=CURRENCY,
            subtotal_cents=subtotal,
            discount_cents=quote.discount_cents,
            points_redeemed=quote.points_to_redeem,
            points_discount_cents=quote.points_discount_cents,
            total_cents=quote.total_cents,
            coupon_code=quote.coupon_code,
            address_id=request.address_id,
            idempotency_key=idempotency_key,
            request_hash=request.fingerprint() if idempotency_key is not None else None,
            stock_ok=False,
            trade_ok=False,
            created_at=now,
            updated_at=now,
            lines=lines,
        )
        try:
            # The first write of this unit of work, so that losing the race
            # on the idempotency key can roll back without losing anything.
            await self.orders.add(order)
        except DuplicateKey:
            if idempotency_key is None:  # pragma: no cover - the only unique key it can break
                raise
            await self.orders.abandon()
            winner = await self.orders.find_by_idempotency_key(user_id, idempotency_key)
            if winner is None:  # pragma: no cover - the winner cannot vanish
                raise Conflict("A concurrent checkout is still running; try again.") from None
            logger.info("checkout retry for order %s lost the race and replays it", winner.id)
            return self._replay(winner, request)

        if not await self.carts.remove_exactly(user_id, items):
            raise Conflict("The cart changed during checkout; review it and try again.")
        return CheckoutResult(
            order=order, created=True, events=[OutgoingEvent(order_created(order))]
        )

    def _replay(self, order: Order, request: CheckoutRequest) -> CheckoutResult:
        if order.request_hash != request.fingerprint():
            raise ValidationFailed(
                "This Idempotency-Key was already used for a different checkout request.",
                errors=[
                    {
                        "field": "Idempotency-Key",
                        "location": "header",
                        "message": "already used with another coupon_code, points_to_redeem "
                        "or address_id",
                        "type": "idempotency_key_reused",
                    }
                ],
            )
        return CheckoutResult(order=order, created=False, events=[])
