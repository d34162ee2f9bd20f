"""The bench's own REST client for setting up shoppers and auditing the stack afterwards.

It rides on the generator's lean HTTP client (one pool per service), since
setting up hundreds of shoppers with a blocking client would take longer
than the measurements.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from meshmart_devstack.bench.checkout import (
    ADMIN,
    BENCH_PRICE_CENTS,
    BENCH_STOCK,
    COUPONS,
    GRANTED_POINTS,
    PENDING,
    SHOPPER_PASSWORD,
    Shopper,
)
from meshmart_devstack.bench.http11 import ConnectionPool, Response

T = TypeVar("T")
API = "/api/v1"


class ApiError(RuntimeError):
    """A setup or audit call got an unexpected answer."""


def _expect(response: Response, *statuses: int, what: str) -> Any:
    if response.status not in statuses:
        raise ApiError(f"{what}: HTTP {response.status} {response.body[:300]!r}")
    return response.json() if response.body else None


async def bounded(
    items: Iterable[T], work: Callable[[T], Awaitable[Any]], concurrency: int = 16
) -> list[Any]:
    """``work`` on every item, at most ``concurrency`` at a time, results in order."""
    gate = asyncio.Semaphore(concurrency)

    async def one(item: T) -> Any:
        async with gate:
            return await work(item)

    return list(await asyncio.gather(*(one(item) for item in items)))


class BenchApi:
    """Calls to the five services as the bench's admin and shoppers."""

    def __init__(self, urls: dict[str, str]) -> None:
        self.pools = {name: ConnectionPool(url, max_connections=32) for name, url in urls.items()}
        self.admin: dict[str, str] = {}
        self.server_errors: list[str] = []
        """5xx answers during setup that a retry got past (reported, since none should occur)."""

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        payload: Any = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """One JSON call to ``service``; ``path`` is below /api/v1.

        A 5xx is retried twice (every call the bench makes during setup is safe to
        repeat or fails harmlessly with a 409) and recorded in ``server_errors``.
        """
        for attempt in range(3):
            response = await self.pools[service].request_json(
                method, API + path, payload, headers=headers
            )
            if response.status < 500 or attempt == 2:
                break
            self.server_errors.append(
                f"{method} {service} {path.split('?')[0]}: HTTP {response.status} "
                f"{response.body[:200].decode(errors='replace')}"
            )
            await asyncio.sleep(0.2 * (attempt + 1))
        return response

    async def login(self, email: str, password: str) -> str:
        """An access token."""
        body = _expect(
            await self.call("user", "POST", "/auth/login", {"email": email, "password": password}),
            200,
            what=f"login {email}",
        )
        token: str = body["access_token"]
        return token

    async def login_admin(self) -> None:
        """Log the demo admin in (every admin call uses it)."""
        token = await self.login(ADMIN["email"], ADMIN["password"])
        self.admin = {"Authorization": f"Bearer {token}"}

    async def create_products(self, count: int) -> list[int]:
        """``count`` bench products with plenty of stock; their ids."""
        categories = _expect(
            await self.call("product", "GET", "/categories"), 200, what="categories"
        )
        ids = []
        for _ in range(count):
            sku = f"BENCH-{uuid.uuid4().hex[:10].upper()}"
            body = _expect(
                await self.call(
                    "product",
                    "POST",
                    "/products",
                    {
                        "sku": sku,
                        "title": f"Bench item {sku}",
                        "price_cents": BENCH_PRICE_CENTS,
                        "category_id": categories[0]["id"],
                        "stock": BENCH_STOCK,
                    },
                    headers=self.admin,
                ),
                201,
                what="create product",
            )
            ids.append(int(body["id"]))
        return ids

    async def new_shopper(self, number: int) -> Shopper:
        """Register and log in a shopper, grant points and claim the demo coupons."""
        email = f"bench-{uuid.uuid4().hex[:12]}-{number}@example.com"
        user = _expect(
            await self.call(
                "user",
                "POST",
                "/auth/register",
                {"email": email, "password": SHOPPER_PASSWORD, "full_name": f"Shopper {number}"},
            ),
            201,
            what="register",
        )
        shopper = Shopper(int(user["id"]), await self.login(email, SHOPPER_PASSWORD))
        _expect(
            await self.call(
                "trade",
                "POST",
                "/points/grants",
                {"user_id": shopper.user_id, "points": GRANTED_POINTS},
                headers=self.admin,
            ),
            201,
            what="grant points",
        )
        for code in COUPONS:
            claimed = await self.call(
                "trade", "POST", "/coupons/claim", {"code": code}, headers=shopper.headers()
            )
            # 409: the campaign ran out (1,000 each); that shopper pays full price.
            if claimed.status == 201:
                shopper.coupons.append(code)
            elif claimed.status != 409:
                _expect(claimed, 201, what=f"claim {code}")
        return shopper

    async def new_shoppers(self, count: int) -> list[Shopper]:
        """``count`` shoppers, set up concurrently."""
        return await bounded(range(count), self.new_shopper, concurrency=8)

    async def pending_orders(self) -> int:
        """How many orders are still PENDING (the saga has not answered yet)."""
        body = _expect(
            await self.call(
                "order", "GET", f"/orders?status={PENDING}&page_size=1", headers=self.admin
            ),
            200,
            what="pending orders",
        )
        return int(body["total"])

    async def wait_settled(self, within: float) -> int:
        """Wait until no order is PENDING or ``within`` seconds passed; the PENDING left."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            pending = await self.pending_orders()
            if pending == 0 or loop.time() > deadline:
                return pending
            await asyncio.sleep(0.25)

    async def orders(self, *, newer_than: int = 0) -> dict[int, dict[str, Any]]:
        """Every order with an id above ``newer_than``, by id (the list is newest first)."""
        found: dict[int, dict[str, Any]] = {}
        page = 1
        while True:
            body = _expect(
                await self.call(
                    "order", "GET", f"/orders?page={page}&page_size=100", headers=self.admin
                ),
                200,
                what="orders",
            )
            items = body["items"]
            for order in items:
                if order["id"] > newer_than:
                    found[order["id"]] = order
            if not items or items[-1]["id"] <= newer_than or len(items) < 100:
                return found
            page += 1

    async def stock(self, product_ids: list[int]) -> dict[int, dict[str, int]]:
        """Stock counters of each product."""

        async def one(product_id: int) -> dict[str, int]:
            body = _expect(
                await self.call("product", "GET", f"/products/{product_id}"), 200, what="product"
            )
            stock: dict[str, int] = body["stock"]
            return stock

        return dict(zip(product_ids, await bounded(product_ids, one), strict=True))

    async def points_and_coupons(
        self, shoppers: list[Shopper]
    ) -> tuple[dict[int, dict[str, int]], dict[int, int]]:
        """Each shopper's points ``{balance, locked}`` and number of locked coupons."""

        async def one(shopper: Shopper) -> tuple[dict[str, int], int]:
            points = _expect(
                await self.call("trade", "GET", "/points?page_size=1", headers=shopper.headers()),
                200,
                what="points",
            )
            coupons = _expect(
                await self.call("trade", "GET", "/coupons", headers=shopper.headers()),
                200,
                what="coupons",
            )
            locked = sum(1 for coupon in coupons if coupon["status"] == "locked")
            return {"balance": points["balance"], "locked": points["locked"]}, locked

        results = await bounded(shoppers, one)
        points = {s.user_id: r[0] for s, r in zip(shoppers, results, strict=True)}
        coupons = {s.user_id: r[1] for s, r in zip(shoppers, results, strict=True)}
        return points, coupons

    async def categories(self) -> list[dict[str, Any]]:
        """The catalogue's categories."""
        body: list[dict[str, Any]] = _expect(
            await self.call("product", "GET", "/categories"), 200, what="categories"
        )
        return body

    def close(self) -> None:
        """Close every connection."""
        for pool in self.pools.values():
            pool.close()
