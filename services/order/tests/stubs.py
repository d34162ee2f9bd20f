"""Stand-ins for the services order calls: product and trade as small FastAPI apps.

They keep real state (products with prices and stock; customers' points and
coupons) and answer like the real services, through httpx.ASGITransport, so
tests assert on real values. An :class:`Outage` in front of each can make the
service unreachable, slow or broken.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import httpx
import jwt
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

PRODUCT_URL = "http://product.test"
TRADE_URL = "http://trade.test"
PROBLEM_JSON = "application/problem+json"


def problem(status: int, detail: str, errors: list[dict[str, str]] | None = None) -> JSONResponse:
    """A problem+json answer like every MeshMart service gives."""
    body: dict[str, Any] = {
        "type": f"https://meshmart.dev/problems/{status}",
        "title": "Problem",
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


class Mode(StrEnum):
    """How a stubbed service behaves."""

    UP = "up"
    DOWN = "down"  # connection refused
    SLOW = "slow"  # answers after the caller gave up
    BROKEN = "broken"  # answers 500


class Outage(httpx.AsyncBaseTransport):
    """A transport in front of a stub app that can take the service down."""

    def __init__(self, app: FastAPI) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.mode = Mode.UP
        self.slow_seconds = 5.0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.mode is Mode.DOWN:
            raise httpx.ConnectError("connection refused", request=request)
        if self.mode is Mode.SLOW:
            await asyncio.sleep(self.slow_seconds)
        if self.mode is Mode.BROKEN:
            return httpx.Response(500, json={"detail": "internal error"}, request=request)
        return await self.inner.handle_async_request(request)


@dataclass
class SeenRequest:
    """What a stub received."""

    method: str
    path: str
    authorization: str | None
    request_id: str | None
    body: Any = None


@dataclass
class StubProduct:
    """A product of the stub catalogue."""

    id: int
    title: str
    price_cents: int
    on_hand: int = 10
    reserved: int = 0
    deleted: bool = False
    currency: str = "USD"

    def read(self) -> dict[str, Any]:
        """The product as product's GET /api/v1/products/{id} renders it."""
        created = datetime(2026, 1, 1, tzinfo=UTC).isoformat()
        return {
            "id": self.id,
            "sku": f"SKU-{self.id:04d}",
            "title": self.title,
            "description": f"About {self.title}",
            "price_cents": self.price_cents,
            "currency": self.currency,
            "category": {"id": 1, "slug": "default", "name": "Default"},
            "image_url": None,
            "stock": {
                "on_hand": self.on_hand,
                "reserved": self.reserved,
                "available": self.on_hand - self.reserved,
            },
            "rating_avg": None,
            "rating_count": 0,
            "created_at": created,
            "updated_at": created,
            "deleted": self.deleted,
        }


class ProductStub:
    """The product service: GET /api/v1/products/{id} over an in-memory catalogue."""

    def __init__(self) -> None:
        self.products: dict[int, StubProduct] = {}
        self.seen: list[SeenRequest] = []
        self.failing: set[int] = set()  # ids answered with a 500
        self.delay_seconds = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self.app = FastAPI()
        self.transport = Outage(self.app)
        self._next_id = 100

        @self.app.get("/api/v1/products/{product_id}")
        async def get_product(product_id: int, request: Request) -> Any:
            self.seen.append(_seen(request))
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                if self.delay_seconds:
                    await asyncio.sleep(self.delay_seconds)
            finally:
                self.in_flight -= 1
            if product_id in self.failing:
                return problem(500, "the catalogue database is down")
            product = self.products.get(product_id)
            if product is None:
                return problem(404, f"Product {product_id} does not exist.")
            return product.read()

    def add(self, title: str, price_cents: int, *, on_hand: int = 10) -> StubProduct:
        """List a product; returns it (its id is assigned here)."""
        self._next_id += 1
        product = StubProduct(self._next_id, title, price_cents, on_hand=on_hand)
        self.products[product.id] = product
        return product

    @property
    def mode(self) -> Mode:
        """How the service behaves now."""
        return self.transport.mode

    @mode.setter
    def mode(self, mode: Mode) -> None:
        self.transport.mode = mode


@dataclass
class StubCoupon:
    """A coupon: a percentage or a fixed amount off the subtotal."""

    code: str
    percent_off: int = 0
    amount_off_cents: int = 0

    def discount(self, subtotal_cents: int) -> int:
        """What it takes off ``subtotal_cents`` (never more than the subtotal)."""
        off = subtotal_cents * self.percent_off // 100 + self.amount_off_cents
        return min(off, subtotal_cents)


class TradeStub:
    """The trade service: POST /api/v1/quotes with coupons and per-customer points.

    Rules: coupon codes are matched ignoring case and answered in upper case;
    one point takes one cent off, at most what is left after the coupon;
    spending more points than the balance, or an unknown coupon, is a 422.
    """

    def __init__(self) -> None:
        self.coupons: dict[str, StubCoupon] = {
            "SAVE10": StubCoupon("SAVE10", percent_off=10),
            "FLAT500": StubCoupon("FLAT500", amount_off_cents=500),
        }
        self.points: dict[int, int] = {}
        self.seen: list[SeenRequest] = []
        self.tamper_total_by = 0  # a misbehaving trade adds this to total_cents
        self.app = FastAPI()
        self.transport = Outage(self.app)

        @self.app.post("/api/v1/quotes")
        async def quote(request: Request) -> Any:
            body = await request.json()
            self.seen.append(_seen(request, body))
            user_id = _user_id(request)
            if user_id is None:
                return problem(401, "A bearer access token is required.")
            subtotal = body["subtotal_cents"]
            code = body.get("coupon_code")
            points = body.get("points_to_redeem", 0)
            errors = []
            coupon = self.coupons.get(code.upper()) if code else None
            if code and coupon is None:
                errors.append({"field": "coupon_code", "message": f"no coupon {code}"})
            balance = self.points.get(user_id, 0)
            if points > balance:
                errors.append(
                    {"field": "points_to_redeem", "message": f"only {balance} points available"}
                )
            if errors:
                return problem(422, "The quote cannot be made.", errors)
            discount = coupon.discount(subtotal) if coupon else 0
            points_discount = min(points, subtotal - discount)
            return {
                "subtotal_cents": subtotal,
                "coupon_code": coupon.code if coupon else None,
                "discount_cents": discount,
                "points_to_redeem": points,
                "points_discount_cents": points_discount,
                "total_cents": subtotal - discount - points_discount + self.tamper_total_by,
            }

    @property
    def mode(self) -> Mode:
        """How the service behaves now."""
        return self.transport.mode

    @mode.setter
    def mode(self, mode: Mode) -> None:
        self.transport.mode = mode


def _seen(request: Request, body: Any = None) -> SeenRequest:
    return SeenRequest(
        method=request.method,
        path=request.url.path,
        authorization=request.headers.get("authorization"),
        request_id=request.headers.get("x-request-id"),
        body=body,
    )


def _user_id(request: Request) -> int | None:
    # The stub trusts the token's subject; the real trade verifies it.
    header = request.headers.get("authorization", "")
    if not header.startswith("Bearer "):
        return None
    claims = jwt.decode(header.removeprefix("Bearer "), options={"verify_signature": False})
    return int(claims["sub"])


@dataclass
class FakeClock:
    """A clock the test moves by hand."""

    current: datetime = field(default_factory=lambda: datetime(2030, 5, 1, 12, 0, tzinfo=UTC))

    def now(self) -> datetime:
        """The current (fake) time."""
        return self.current

    def advance(self, seconds: float) -> datetime:
        """Move the clock on; returns the new time."""
        self.current += timedelta(seconds=seconds)
        return self.current
