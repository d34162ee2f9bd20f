"""Request and response bodies of the trade API.

Money is integer cents and points are integers; request integers are strict,
so 19.99, "1999" or true are rejected (422) instead of being truncated or
coerced. Request bodies reject unknown fields.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    Field,
    StringConstraints,
)

from meshmart_common.pagination import Page
from meshmart_common.schemas import RequestBody
from trade_service.domain.points import PointsBalance
from trade_service.domain.pricing import Quote
from trade_service.repository.models import (
    Coupon,
    CouponCampaign,
    CouponStatus,
    DiscountType,
    PointsEntry,
    PointsReason,
)

MAX_ID = 2**31 - 1
MAX_CENTS = 10**12
"""Upper bound of any amount of cents or points in a request (ten billion dollars)."""
MAX_FIXED_DISCOUNT_CENTS = 100_000_000
MAX_QUANTITY = 1_000_000_000
MAX_PER_USER_LIMIT = 1000
MAX_GRANT_POINTS = 1_000_000
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)


def _valid_unicode(value: str) -> str:
    # json.loads accepts lone surrogates ("\ud800"), which no database can
    # store, and NUL, which SQLite's string functions treat as the end.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("must be valid Unicode text") from exc
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _normalised_code(value: Any) -> Any:
    # Customers type codes by hand: " welcome10 " is WELCOME10.
    return value.strip().upper() if isinstance(value, str) else value


def _stored_time(value: datetime) -> datetime:
    # Stored in UTC; both databases' DATETIME must be able to hold it.
    try:
        utc = value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("is out of range") from exc
    if not EARLIEST <= utc < LATEST:
        raise ValueError("must be between 1970-01-01 and 9999-01-01 UTC")
    return utc


CampaignTime = Annotated[
    AwareDatetime,
    AfterValidator(_stored_time),
    Field(description="with a UTC offset", examples=["2026-01-01T00:00:00Z"]),
]
CampaignCode = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z0-9-]{3,32}$"),
    Field(description="3-32 upper-case letters, digits and dashes", examples=["WELCOME10"]),
]
CouponCode = Annotated[
    str,
    BeforeValidator(_normalised_code),
    StringConstraints(pattern=r"^[A-Z0-9-]{3,32}$"),
    Field(
        description="a campaign code (any case; surrounding spaces ignored)",
        examples=["WELCOME10"],
    ),
]
CampaignName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=100),
    AfterValidator(_valid_unicode),
]
DiscountValue = Annotated[
    int,
    Field(
        strict=True,
        ge=1,
        le=MAX_FIXED_DISCOUNT_CENTS,
        description="fixed: cents off (>= 1); percent: 1 to 100",
    ),
]
Cents = Annotated[int, Field(strict=True, ge=0, le=MAX_CENTS, description="integer cents")]
Points = Annotated[int, Field(strict=True, ge=0, le=MAX_CENTS, description="whole points")]
Quantity = Annotated[int, Field(strict=True, ge=1, le=MAX_QUANTITY)]
PerUserLimit = Annotated[int, Field(strict=True, ge=1, le=MAX_PER_USER_LIMIT)]
UserId = Annotated[int, Field(strict=True, ge=1, le=MAX_ID)]
GrantPoints = Annotated[int, Field(strict=True, ge=1, le=MAX_GRANT_POINTS)]
GrantReason = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=200), AfterValidator(_valid_unicode)
]


# --- campaigns ------------------------------------------------------------------


class CampaignCreate(RequestBody):
    """A new coupon campaign (admin)."""

    code: CampaignCode
    name: CampaignName
    discount_type: DiscountType
    discount_value: DiscountValue
    min_spend_cents: Cents = Field(default=0, description="lowest subtotal the coupon applies to")
    total_quantity: Quantity = Field(description="coupons that can be claimed in all")
    per_user_limit: PerUserLimit = Field(default=1, description="coupons one customer may claim")
    starts_at: CampaignTime
    ends_at: CampaignTime


class CampaignRead(BaseModel):
    """A coupon campaign with its counters."""

    id: int
    code: str
    name: str
    discount_type: DiscountType
    discount_value: int
    min_spend_cents: int
    total_quantity: int
    per_user_limit: int
    starts_at: datetime
    ends_at: datetime
    claimed_count: int = Field(description="coupons claimed so far")
    used_count: int = Field(description="coupons spent on paid orders")
    created_at: datetime

    @classmethod
    def of(cls, campaign: CouponCampaign) -> CampaignRead:
        """Render a campaign."""
        return cls(
            id=campaign.id,
            code=campaign.code,
            name=campaign.name,
            discount_type=DiscountType(campaign.discount_type),
            discount_value=campaign.discount_value,
            min_spend_cents=campaign.min_spend_cents,
            total_quantity=campaign.total_quantity,
            per_user_limit=campaign.per_user_limit,
            starts_at=campaign.starts_at,
            ends_at=campaign.ends_at,
            claimed_count=campaign.claimed_count,
            used_count=campaign.used_count,
            created_at=campaign.created_at,
        )


class CampaignPage(Page[CampaignRead]):
    """One page of campaigns."""


# --- coupons --------------------------------------------------------------------


class CouponClaim(RequestBody):
    """Which campaign to claim a coupon of."""

    code: CouponCode


class CouponRead(BaseModel):
    """A coupon the caller holds."""

    id: int
    campaign_id: int
    code: str
    status: CouponStatus
    discount_type: DiscountType
    discount_value: int
    min_spend_cents: int
    ends_at: datetime
    claimed_at: datetime

    @classmethod
    def of(cls, coupon: Coupon, status: CouponStatus) -> CouponRead:
        """Render a coupon with its status as seen now."""
        campaign = coupon.campaign
        return cls(
            id=coupon.id,
            campaign_id=coupon.campaign_id,
            code=coupon.code,
            status=status,
            discount_type=DiscountType(campaign.discount_type),
            discount_value=campaign.discount_value,
            min_spend_cents=campaign.min_spend_cents,
            ends_at=campaign.ends_at,
            claimed_at=coupon.claimed_at,
        )


# --- quotes ---------------------------------------------------------------------


class QuoteCreate(RequestBody):
    """An order to price: its subtotal, and the coupon and points the customer wants to use."""

    subtotal_cents: Cents
    coupon_code: CouponCode | None = None
    points_to_redeem: Points = 0


class QuoteRead(BaseModel):
    """The price after the coupon and points: total = subtotal - discount - points."""

    subtotal_cents: int
    coupon_code: str | None
    discount_cents: int
    points_to_redeem: int
    points_discount_cents: int = Field(description="1 point redeems 1 cent")
    total_cents: int

    @classmethod
    def of(cls, quote: Quote) -> QuoteRead:
        """Render a quote."""
        return cls(
            subtotal_cents=quote.subtotal_cents,
            coupon_code=quote.coupon_code,
            discount_cents=quote.discount_cents,
            points_to_redeem=quote.points_to_redeem,
            points_discount_cents=quote.points_discount_cents,
            total_cents=quote.total_cents,
        )


# --- points ---------------------------------------------------------------------


class PointsEntryRead(BaseModel):
    """One line of the points history; ``delta`` is the change in available points."""

    id: int
    delta: int
    reason: PointsReason
    order_id: int | None
    created_at: datetime

    @classmethod
    def of(cls, entry: PointsEntry) -> PointsEntryRead:
        """Render a history entry."""
        return cls(
            id=entry.id,
            delta=entry.delta,
            reason=PointsReason(entry.reason),
            order_id=entry.order_id,
            created_at=entry.created_at,
        )


class PointsEntryPage(Page[PointsEntryRead]):
    """One page of points history, newest first."""


class PointsRead(BaseModel):
    """The caller's points: balance includes the locked part; available = balance - locked."""

    balance: int
    locked: int = Field(description="held for orders not paid yet")
    available: int = Field(description="can be redeemed now")
    history: PointsEntryPage


class PointsGrantCreate(RequestBody):
    """Points an admin gives a user (demos, goodwill)."""

    user_id: UserId
    points: GrantPoints
    reason: GrantReason | None = Field(default=None, description="a note kept with the entry")


class PointsGrantRead(BaseModel):
    """The user's points after a grant."""

    user_id: int
    granted: int
    balance: int
    locked: int
    available: int

    @classmethod
    def of(cls, balance: PointsBalance, granted: int) -> PointsGrantRead:
        """Render the counters after a grant."""
        return cls(
            user_id=balance.user_id,
            granted=granted,
            balance=balance.balance,
            locked=balance.locked,
            available=balance.available,
        )
