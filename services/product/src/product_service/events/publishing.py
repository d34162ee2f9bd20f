"""What the product service publishes, and how: outbox rows in the caller's transaction.

Every event goes through :func:`publish`, which writes it to the outbox with
the session of the change it describes, keyed by the payload's aggregate id;
the relay started by the app's lifespan sends it after the commit.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from meshmart_common.events import EventData, ProductCreated, ProductUpdated, StockChanged
from meshmart_common.messaging.outbox import EventPublisher
from product_service.repository.models import OutboxEvent, Product

SOURCE = "/meshmart/product"
"""The CloudEvents ``source`` of every product event."""


class StockChangeReason:
    """The ``reason`` of stock.changed."""

    ADJUSTED = "adjusted"  # an admin set on_hand (PUT /products/{id}/stock)
    RESERVED = "reserved"  # held for an order (order.created)
    RELEASED = "released"  # given back (order.rejected, order.cancelled)
    COMMITTED = "committed"  # sold (order.paid)


def new_publisher() -> EventPublisher:
    """An EventPublisher writing into the product outbox (one per app)."""
    return EventPublisher(OutboxEvent, source=SOURCE)


async def publish(session: AsyncSession, publisher: EventPublisher, payload: EventData) -> None:
    """Add ``payload`` to the outbox in ``session``'s transaction, keyed by its aggregate."""
    await publisher.publish(session, payload, key=payload.aggregate_key())


def product_created(product: Product) -> ProductCreated:
    """product.created for a new product."""
    return ProductCreated(
        product_id=product.id,
        sku=product.sku,
        title=product.title,
        price_cents=product.price_cents,
        category_id=product.category_id,
        deleted=product.is_deleted,
    )


def product_updated(product: Product) -> ProductUpdated:
    """product.updated with the product as it is now (``deleted`` once soft-deleted)."""
    return ProductUpdated(
        product_id=product.id,
        sku=product.sku,
        title=product.title,
        price_cents=product.price_cents,
        category_id=product.category_id,
        deleted=product.is_deleted,
    )


def stock_changed(product_id: int, on_hand: int, reserved: int, reason: str) -> StockChanged:
    """stock.changed with the product's counters after the change."""
    return StockChanged(product_id=product_id, on_hand=on_hand, reserved=reserved, reason=reason)
