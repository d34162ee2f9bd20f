"""The checkout benchmark: shoppers, the scheduled checkout, and the no-loss audit.

One scheduled arrival is one checkout by one idle shopper: PUT a product into
the cart, then POST /api/v1/orders with an Idempotency-Key (a coupon on each
shopper's first two checkouts, 50 points on every other one). The latency
that counts is from the *scheduled* send time to the moment the order moved
to AWAITING_PAYMENT, read afterwards from the order's ``updated_at`` (set by
the order service when both saga replies are in; the bench never pays, so
nothing moves it later). Reading it afterwards keeps polling load off the
order service while it is measured.

Shoppers are many (each checks out at most a few times a minute, under
RATE_LIMIT_CHECKOUT_PER_MINUTE); one shopper never has two checkouts in
flight, since both would share its cart.

The audit after the run checks that nothing was lost or applied twice: every
201 made exactly one order, every order reached AWAITING_PAYMENT, each bench
product's ``reserved`` equals the units of those orders, and each shopper's
locked points and locked coupons equal what their orders hold.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from meshmart_devstack.bench.arrivals import OK, Job, Outcome, status_outcome
from meshmart_devstack.bench.http11 import ConnectionPool

ADMIN = {"email": "admin@meshmart.local", "password": "meshmart-admin"}
SHOPPER_PASSWORD = "bench shopper password"  # noqa: S105 - throwaway accounts of a bench stack
BENCH_PRICE_CENTS = 4000
"""Above the minimum spend of both demo campaigns (WELCOME10 $20, SAVE5 $30)."""
BENCH_STOCK = 10_000_000
GRANTED_POINTS = 100_000
POINTS_PER_CHECKOUT = 50
COUPONS = ("WELCOME10", "SAVE5")
PENDING = "PENDING"
AWAITING = "AWAITING_PAYMENT"


@dataclass
class Shopper:
    """A bench customer: id, bearer token, coupon codes claimed and not yet used."""

    user_id: int
    token: str
    coupons: list[str] = field(default_factory=list)

    def headers(self) -> dict[str, str]:
        """Authorization header."""
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class CheckoutSpec:
    """What the generator process needs for a checkout step."""

    order_url: str
    shoppers: list[Shopper]
    product_ids: list[int]
    rate: float
    duration: float
    timeout: float = 5.0
    max_connections: int = 256
    first_index: int = 0
    """Global index of this step's first checkout (coupon and points choices continue)."""

    def to_json(self) -> dict[str, Any]:
        """The spec as JSON for the generator's stdin."""
        return {
            "kind": "checkout",
            "order_url": self.order_url,
            "shoppers": [
                {"user_id": s.user_id, "token": s.token, "coupons": s.coupons}
                for s in self.shoppers
            ],
            "product_ids": self.product_ids,
            "rate": self.rate,
            "duration": self.duration,
            "timeout": self.timeout,
            "max_connections": self.max_connections,
            "first_index": self.first_index,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CheckoutSpec:
        """Read :meth:`to_json`'s output."""
        return cls(
            order_url=data["order_url"],
            shoppers=[
                Shopper(s["user_id"], s["token"], list(s["coupons"])) for s in data["shoppers"]
            ],
            product_ids=list(data["product_ids"]),
            rate=float(data["rate"]),
            duration=float(data["duration"]),
            timeout=float(data.get("timeout", 5.0)),
            max_connections=int(data.get("max_connections", 256)),
            first_index=int(data.get("first_index", 0)),
        )


def checkout_job(pool: ConnectionPool, spec: CheckoutSpec) -> Job:
    """One scheduled checkout; keeps what the audit needs of the order it made."""
    idle: asyncio.Queue[Shopper] = asyncio.Queue()
    for shopper in spec.shoppers:
        idle.put_nowait(shopper)

    async def job(index: int) -> Outcome:
        number = spec.first_index + index
        shopper = await idle.get()
        try:
            product_id = spec.product_ids[number % len(spec.product_ids)]
            quantity = 1 + number % 3
            headers = shopper.headers()
            cart = await pool.request_json(
                "PUT", f"/api/v1/cart/items/{product_id}", {"quantity": quantity}, headers=headers
            )
            if cart.status != 200:
                return f"cart {status_outcome(cart.status)}", None
            body: dict[str, Any] = {}
            coupon = shopper.coupons[0] if shopper.coupons else None
            if coupon:
                body["coupon_code"] = coupon
            if number % 2 == 0:
                body["points_to_redeem"] = POINTS_PER_CHECKOUT
            order = await pool.request_json(
                "POST",
                "/api/v1/orders",
                body,
                headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
            )
            if order.status != 201:
                return f"checkout {status_outcome(order.status)}", None
            if coupon:
                shopper.coupons.pop(0)
            placed = order.json()
            return OK, {
                "order_id": placed["id"],
                "user_id": shopper.user_id,
                "product_id": product_id,
                "quantity": quantity,
                "coupon_code": placed.get("coupon_code"),
                "points_redeemed": placed.get("points_redeemed", 0),
            }
        finally:
            idle.put_nowait(shopper)

    return job


def awaiting_latencies(
    wall_start: float,
    offsets: list[float],
    kept: list[dict[str, Any] | None],
    orders: dict[int, dict[str, Any]],
) -> tuple[list[float | None], list[str]]:
    """Seconds from each checkout's scheduled time to AWAITING_PAYMENT, and its outcome.

    ``orders`` maps order id to the order as the API renders it. A placed
    order that did not reach AWAITING_PAYMENT counts as an error named after
    its status.
    """
    latencies: list[float | None] = []
    outcomes: list[str] = []
    for offset, placed in zip(offsets, kept, strict=True):
        if placed is None:
            latencies.append(None)
            outcomes.append("not placed")
            continue
        order = orders.get(placed["order_id"])
        if order is None:
            latencies.append(None)
            outcomes.append("order lost")
        elif order["status"] != AWAITING:
            latencies.append(None)
            outcomes.append(f"order {order['status']}")
        else:
            reached = datetime.fromisoformat(order["updated_at"]).timestamp()
            latencies.append(reached - (wall_start + offset))
            outcomes.append(OK)
    return latencies, outcomes


@dataclass
class Audit:
    """Whether every checkout's effects were applied exactly once."""

    placed: int
    orders_seen: int
    statuses: dict[str, int]
    problems: list[str]

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "ok": self.ok,
            "placed": self.placed,
            "orders_seen": self.orders_seen,
            "statuses": self.statuses,
            "problems": self.problems[:50],
        }


def audit(
    placed: Iterable[dict[str, Any]],
    orders: dict[int, dict[str, Any]],
    stock: dict[int, dict[str, int]],
    points: dict[int, dict[str, int]],
    locked_coupons: dict[int, int],
) -> Audit:
    """Compare what the checkouts placed with the state of order, product and trade.

    ``placed``: the kept records of every 201; ``orders``: every order of the
    bench shoppers by id; ``stock``: each bench product's stock counters;
    ``points``: each shopper's ``{balance, locked}``; ``locked_coupons``:
    each shopper's number of coupons in status locked.
    """
    placed = list(placed)
    problems: list[str] = []
    ids = Counter(p["order_id"] for p in placed)
    problems += [f"order {i} answered {n} times as created" for i, n in ids.items() if n > 1]
    problems += [f"order {i} was placed but is missing" for i in ids if i not in orders]
    problems += [f"order {i} exists but no checkout created it" for i in orders if i not in ids]
    statuses = Counter(order["status"] for order in orders.values())
    problems += [
        f"order {i} is {order['status']}, not {AWAITING}"
        for i, order in orders.items()
        if order["status"] != AWAITING
    ]
    # What the other services hold must match the orders that hold it, whoever placed them.
    held = [order for order in orders.values() if order["status"] == AWAITING]
    reserved: Counter[int] = Counter()
    locked_points: Counter[int] = Counter()
    coupons: Counter[int] = Counter()
    for order in held:
        for line in order["lines"]:
            reserved[line["product_id"]] += line["quantity"]
        locked_points[order["user_id"]] += order["points_redeemed"]
        if order.get("coupon_code"):
            coupons[order["user_id"]] += 1
    for product_id, counters in stock.items():
        if counters["reserved"] != reserved[product_id]:
            problems.append(
                f"product {product_id}: reserved {counters['reserved']}, "
                f"orders hold {reserved[product_id]}"
            )
        if counters["on_hand"] != BENCH_STOCK:
            problems.append(
                f"product {product_id}: on hand {counters['on_hand']}, not {BENCH_STOCK}"
            )
    for user_id, counters in points.items():
        if counters["locked"] != locked_points[user_id]:
            problems.append(
                f"user {user_id}: {counters['locked']} points locked, "
                f"orders hold {locked_points[user_id]}"
            )
        if counters["balance"] != GRANTED_POINTS:
            problems.append(f"user {user_id}: balance {counters['balance']}, not {GRANTED_POINTS}")
    for user_id, count in locked_coupons.items():
        if count != coupons[user_id]:
            problems.append(
                f"user {user_id}: {count} coupons locked, orders hold {coupons[user_id]}"
            )
    return Audit(
        placed=len(placed), orders_seen=len(orders), statuses=dict(statuses), problems=problems
    )
