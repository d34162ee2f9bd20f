"""Route /api/v1/quotes: price a checkout with a coupon and points."""

from __future__ import annotations

from fastapi import APIRouter

from meshmart_common.auth import CurrentUser
from trade_service.api.deps import QuotesDep, problems
from trade_service.api.schemas import QuoteCreate, QuoteRead

router = APIRouter(prefix="/quotes", tags=["quotes"])


@router.post("", response_model=QuoteRead, responses=problems(400, 401, 422))
async def create_quote(body: QuoteCreate, quotes: QuotesDep, principal: CurrentUser) -> QuoteRead:
    """Price an order for the caller; 422 on coupon_code or points_to_redeem if they can't apply."""
    quote = await quotes.quote(
        principal.user_id,
        subtotal_cents=body.subtotal_cents,
        coupon_code=body.coupon_code,
        points_to_redeem=body.points_to_redeem,
    )
    return QuoteRead.of(quote)
