"""The trade service as the order domain sees it: POST /api/v1/quotes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from meshmart_common.errors import ValidationFailed
from meshmart_common.service_client import BadGateway, Caller, ServiceClient
from order_service.domain.ports import Quote, QuoteRequest

QUOTES_PATH = "/api/v1/quotes"


class _QuoteBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    subtotal_cents: int = Field(ge=0)
    coupon_code: str | None = Field(default=None, max_length=64)
    discount_cents: int = Field(ge=0)
    points_to_redeem: int = Field(ge=0)
    points_discount_cents: int = Field(ge=0)
    total_cents: int = Field(ge=0)


class TradeGateway:
    """QuoteProvider over REST, asking with the customer's token (quotes use their points)."""

    def __init__(self, client: ServiceClient, caller: Caller) -> None:
        self.client = client
        self.caller = caller

    async def quote(self, request: QuoteRequest) -> Quote:
        """Trade's quote for the request.

        A 422 from trade (unknown or expired coupon, too few points...) becomes
        ValidationFailed with trade's field errors; a quote that does not add
        up or does not answer the question asked is a BadGateway, so an order
        is never priced with it.
        """
        response = await self.client.post(
            QUOTES_PATH,
            json={
                "subtotal_cents": request.subtotal_cents,
                "coupon_code": request.coupon_code,
                "points_to_redeem": request.points_to_redeem,
            },
            caller=self.caller,
            # A quote only reads coupons and points (trade's QuoteService holds
            # nothing), so asking twice is harmless and a retry may cover a
            # trade instance that went away mid-call.
            idempotent=True,
        )
        if response.status_code == 422:
            raise ValidationFailed(
                response.problem_detail() or "The coupon or the points cannot be used.",
                errors=response.field_errors() or None,
            )
        body = response.parse(_QuoteBody)
        asked_coupon = (request.coupon_code or "").casefold()
        answered_coupon = (body.coupon_code or "").casefold()
        if (
            body.subtotal_cents != request.subtotal_cents
            or body.points_to_redeem != request.points_to_redeem
            or asked_coupon != answered_coupon
            or body.total_cents
            != body.subtotal_cents - body.discount_cents - body.points_discount_cents
        ):
            raise BadGateway(
                "trade sent a quote that does not match the checkout.", service=self.client.name
            )
        return Quote(
            subtotal_cents=body.subtotal_cents,
            coupon_code=body.coupon_code or None,
            discount_cents=body.discount_cents,
            points_to_redeem=body.points_to_redeem,
            points_discount_cents=body.points_discount_cents,
            total_cents=body.total_cents,
        )
