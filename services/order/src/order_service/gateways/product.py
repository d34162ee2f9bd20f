"""The product service as the order domain sees it: GET /api/v1/products/{id}."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from meshmart_common.service_client import BadGateway, Caller, ServiceClient
from order_service.domain.ports import ProductSnapshot


class _Stock(BaseModel):
    model_config = ConfigDict(extra="ignore")

    available: int


class _ProductBody(BaseModel):
    """The fields of product's ProductRead that order uses (the rest is ignored)."""

    model_config = ConfigDict(extra="ignore")

    id: int
    title: str = Field(min_length=1, max_length=200)
    price_cents: int = Field(ge=0, le=2**31 - 1)
    currency: str = Field(min_length=3, max_length=3)
    stock: _Stock
    deleted: bool


class ProductGateway:
    """ProductCatalogue over REST, asking on behalf of ``caller``."""

    def __init__(self, client: ServiceClient, caller: Caller) -> None:
        self.client = client
        self.caller = caller

    async def find(self, product_id: int) -> ProductSnapshot | None:
        """The product now (deleted ones too), None when product does not know it.

        UpstreamUnavailable / GatewayTimeout / BadGateway when product cannot
        answer or answers something unreadable.
        """
        response = await self.client.get(f"/api/v1/products/{product_id}", caller=self.caller)
        if response.not_found:
            return None
        body = response.parse(_ProductBody)
        if body.id != product_id:
            raise BadGateway(
                f"product answered for product {body.id} when asked for {product_id}.",
                service=self.client.name,
            )
        return ProductSnapshot(
            product_id=body.id,
            title=body.title,
            price_cents=body.price_cents,
            currency=body.currency,
            available=body.stock.available,
            deleted=body.deleted,
        )
