"""A REST client of the whole platform for end-to-end tests, as a tester would drive it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.stack import RunningStack


def eventually(probe: Callable[[], Any], *, within: float = 60.0, what: str = "") -> Any:
    """Poll ``probe`` until it returns something truthy; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what or probe}: last value {last!r}")


@dataclass
class Shop:
    """A REST client for the whole platform with an admin session."""

    stack: RunningStack
    http: httpx.Client
    admin: dict[str, str]

    def url(self, service: str, path: str) -> str:
        return f"{self.stack.urls[service]}/api/v1{path}"

    def call(
        self,
        method: str,
        service: str,
        path: str,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        return self.http.request(method, self.url(service, path), headers=headers, **kwargs)

    def customer(self) -> dict[str, str]:
        email = f"shopper-{uuid.uuid4().hex[:10]}@example.com"
        body = {"email": email, "password": "correct horse battery"}
        assert self.call("POST", "user", "/auth/register", json=body).status_code == 201
        login = self.call("POST", "user", "/auth/login", json=body)
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        return {"Authorization": f"Bearer {token}"}

    def user_id(self, headers: dict[str, str]) -> int:
        me: int = self.call("GET", "user", "/users/me", headers).json()["id"]
        return me

    def product(self, stock: int, price_cents: int = 2500) -> int:
        categories = self.call("GET", "product", "/categories").json()
        sku = f"SAGA-{uuid.uuid4().hex[:8].upper()}"
        created = self.call(
            "POST",
            "product",
            "/products",
            self.admin,
            json={
                "sku": sku,
                "title": f"Saga item {sku}",
                "price_cents": price_cents,
                "category_id": categories[0]["id"],
                "stock": stock,
            },
        )
        assert created.status_code == 201, created.text
        product_id: int = created.json()["id"]
        return product_id

    def stock(self, product_id: int) -> dict[str, int]:
        stock: dict[str, int] = self.call("GET", "product", f"/products/{product_id}").json()[
            "stock"
        ]
        return stock

    def checkout(
        self,
        headers: dict[str, str],
        product_id: int,
        quantity: int,
        key: str | None = None,
        **body: Any,
    ) -> httpx.Response:
        put = self.call(
            "PUT", "order", f"/cart/items/{product_id}", headers, json={"quantity": quantity}
        )
        assert put.status_code == 200, put.text
        extra = {"Idempotency-Key": key} if key else {}
        return self.call("POST", "order", "/orders", {**headers, **extra}, json=body)

    def order(self, headers: dict[str, str], order_id: int) -> dict[str, Any]:
        order: dict[str, Any] = self.call("GET", "order", f"/orders/{order_id}", headers).json()
        return order

    def wait_status(
        self, headers: dict[str, str], order_id: int, *statuses: str, within: float = 60.0
    ) -> dict[str, Any]:
        order: dict[str, Any] = eventually(
            lambda: (o := self.order(headers, order_id))["status"] in statuses and o,
            within=within,
            what=f"order {order_id} to reach {statuses}",
        )
        return order

    def points(self, headers: dict[str, str]) -> dict[str, Any]:
        points: dict[str, Any] = self.call("GET", "trade", "/points", headers).json()
        return points

    def grant_points(self, headers: dict[str, str], points: int) -> None:
        granted = self.call(
            "POST",
            "trade",
            "/points/grants",
            self.admin,
            json={"user_id": self.user_id(headers), "points": points},
        )
        assert granted.status_code == 201, granted.text

    def coupon(self, headers: dict[str, str], percent: int = 10, valid_for: int = 86400) -> str:
        """Create a campaign open for ``valid_for`` more seconds; ``headers``' user claims it."""
        code = f"SAGA{uuid.uuid4().hex[:6].upper()}"
        now = time.time()
        campaign = self.call(
            "POST",
            "trade",
            "/coupon-campaigns",
            self.admin,
            json={
                "code": code,
                "name": "saga test",
                "discount_type": "percent",
                "discount_value": percent,
                "min_spend_cents": 0,
                "total_quantity": 100,
                "per_user_limit": 1,
                "starts_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60)),
                "ends_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + valid_for)),
            },
        )
        assert campaign.status_code == 201, campaign.text
        claim = self.call("POST", "trade", "/coupons/claim", headers, json={"code": code})
        assert claim.status_code == 201, claim.text
        return code

    def coupon_status(self, headers: dict[str, str], code: str) -> str:
        coupons = self.call("GET", "trade", "/coupons", headers).json()
        status: str = next(c["status"] for c in coupons if c["code"] == code)
        return status
