"""Realistic MeshMart shoppers for Locust (`make load`, or the compose loadgenerator).

Each simulated user is a visitor who mostly browses and searches the
catalogue and looks at products; along the way they register (a new account
each time they "come back as someone new"), claim a demo coupon, fill a
cart, check out (with or without the coupon, with points once they have
earned some), wait for the order to be confirmed, and pay, or now and then
cancel or walk away (the payment timeout then cancels the order).

Where the services are:

- ``MESHMART_GATEWAY`` (e.g. ``http://127.0.0.1:8080``, compose's nginx):
  one base URL for everything, routed by path;
- otherwise ``MESHMART_USER_URL``, ``MESHMART_PRODUCT_URL``,
  ``MESHMART_ORDER_URL``, ``MESHMART_TRADE_URL`` (defaults: `make run`'s
  ports 8001-8004 on 127.0.0.1).

Think time between actions: ``LOADGEN_WAIT_MIN`` to ``LOADGEN_WAIT_MAX``
seconds (default 1 to 5). Requests are grouped in Locust's statistics by
route template (``/api/v1/products/[id]``), never by raw id.

Every login comes from the load generator's address: with more than a few
dozen users, raise the user service's ``RATE_LIMIT_LOGIN_PER_MINUTE`` (60
per client IP by default), or logins will see 429s (counted as failures).
"""

from __future__ import annotations

import os
import random
import time
import uuid
from typing import Any, ClassVar

from locust import FastHttpUser, between, events, task
from locust.env import Environment

API = "/api/v1"
PASSWORD = "correct horse battery staple"  # noqa: S105 - throwaway load-test accounts
COUPONS = ("WELCOME10", "SAVE5")
SEARCH_WORDS = ("lamp", "mug", "shirt", "book", "chair", "pen", "bag", "tea", "desk", "a")
SORTS = ("price", "-price", "rating", "-rating", "title", "-created_at")
FINAL = {"AWAITING_PAYMENT", "REJECTED", "PAID", "CANCELLED"}


def _service_urls() -> dict[str, str]:
    gateway = os.environ.get("MESHMART_GATEWAY", "").rstrip("/")
    defaults = {"user": 8001, "product": 8002, "order": 8003, "trade": 8004}
    return {
        name: gateway
        or os.environ.get(f"MESHMART_{name.upper()}_URL", f"http://127.0.0.1:{port}").rstrip("/")
        for name, port in defaults.items()
    }


URLS = _service_urls()


class Catalogue:
    """Product ids and category slugs, read once per load-generator process."""

    product_ids: ClassVar[list[int]] = []
    categories: ClassVar[list[str]] = []


@events.test_start.add_listener  # type: ignore[untyped-decorator]
def _read_catalogue(environment: Environment, **_kwargs: Any) -> None:
    import json
    import urllib.request

    base = f"{URLS['product']}{API}"
    with urllib.request.urlopen(f"{base}/categories", timeout=10) as response:  # noqa: S310
        Catalogue.categories = [c["slug"] for c in json.load(response)]
    ids: list[int] = []
    page = 1
    while True:
        url = f"{base}/products?page={page}&page_size=100"
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310
            body = json.load(response)
        ids += [item["id"] for item in body["items"]]
        if len(body["items"]) < 100:
            break
        page += 1
    Catalogue.product_ids = ids or [1]


class Shopper(FastHttpUser):
    """A visitor of the shop: browses, searches, buys now and then."""

    host = URLS["product"]
    wait_time = between(
        float(os.environ.get("LOADGEN_WAIT_MIN", "1")),
        float(os.environ.get("LOADGEN_WAIT_MAX", "5")),
    )

    def on_start(self) -> None:
        self.token: str | None = None
        self.coupon: str | None = None

    # ---------------------------------------------------------------- helpers

    def url(self, service: str, path: str) -> str:
        return f"{URLS[service]}{API}{path}"

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def product_id(self) -> int:
        return random.choice(Catalogue.product_ids or [1])  # noqa: S311

    def sign_up(self) -> bool:
        """Register a new account, log in, and claim a demo coupon (sometimes)."""
        email = f"shopper-{uuid.uuid4().hex[:12]}@example.com"
        body = {"email": email, "password": PASSWORD, "full_name": "Load Shopper"}
        registered = self.client.post(
            self.url("user", "/auth/register"), json=body, name=f"{API}/auth/register"
        )
        if registered.status_code != 201:
            return False
        login = self.client.post(
            self.url("user", "/auth/login"),
            json={"email": email, "password": PASSWORD},
            name=f"{API}/auth/login",
        )
        if login.status_code != 200:
            return False
        self.token = login.json()["access_token"]
        self.coupon = None
        if random.random() < 0.6:  # noqa: S311
            code = random.choice(COUPONS)  # noqa: S311
            with self.client.post(
                self.url("trade", "/coupons/claim"),
                json={"code": code},
                headers=self.auth(),
                catch_response=True,
                name=f"{API}/coupons/claim",
            ) as claim:
                if claim.status_code == 201:
                    self.coupon = code
                elif claim.status_code == 409:  # sold out: that is the shop's answer, not a bug
                    claim.success()
        return True

    def signed_in(self) -> bool:
        return self.token is not None or self.sign_up()

    # ---------------------------------------------------------------- browsing (most traffic)

    @task(30)
    def browse_catalogue(self) -> None:
        params = f"?page={random.randint(1, 3)}&page_size=20"  # noqa: S311
        if Catalogue.categories and random.random() < 0.5:  # noqa: S311
            params += f"&category={random.choice(Catalogue.categories)}"  # noqa: S311
        self.client.get(self.url("product", f"/products{params}"), name=f"{API}/products [browse]")

    @task(25)
    def search(self) -> None:
        word = random.choice(SEARCH_WORDS)  # noqa: S311
        query = f"?q={word}&sort={random.choice(SORTS)}"  # noqa: S311
        if random.random() < 0.3:  # noqa: S311
            query += "&min_price=1000&max_price=5000"
        self.client.get(self.url("product", f"/products{query}"), name=f"{API}/products [search]")

    @task(20)
    def view_product(self) -> None:
        product_id = self.product_id()
        self.client.get(self.url("product", f"/products/{product_id}"), name=f"{API}/products/[id]")
        if random.random() < 0.3:  # noqa: S311
            self.client.get(
                self.url("product", f"/products/{product_id}/reviews"),
                name=f"{API}/products/[id]/reviews",
            )

    # ---------------------------------------------------------------- buying

    @task(10)
    def add_to_cart(self) -> None:
        if not self.signed_in():
            return
        self.client.put(
            self.url("order", f"/cart/items/{self.product_id()}"),
            json={"quantity": random.randint(1, 3)},  # noqa: S311
            headers=self.auth(),
            name=f"{API}/cart/items/[id]",
        )

    @task(4)
    def view_cart(self) -> None:
        if self.signed_in():
            self.client.get(self.url("order", "/cart"), headers=self.auth(), name=f"{API}/cart")

    @task(6)
    def checkout(self) -> None:
        """Fill the cart if empty, check out, wait for the saga, then pay, cancel or leave."""
        if not self.signed_in():
            return
        cart = self.client.get(self.url("order", "/cart"), headers=self.auth(), name=f"{API}/cart")
        if cart.status_code == 200 and not cart.json()["items"]:
            self.add_to_cart()
        body: dict[str, Any] = {}
        if self.coupon and random.random() < 0.7:  # noqa: S311
            body["coupon_code"] = self.coupon
        points = self.client.get(
            self.url("trade", "/points?page_size=1"), headers=self.auth(), name=f"{API}/points"
        )
        if points.status_code == 200 and points.json()["available"] > 0:
            body["points_to_redeem"] = min(points.json()["available"], 200)
        headers = {**self.auth(), "Idempotency-Key": uuid.uuid4().hex}
        with self.client.post(
            self.url("order", "/orders"),
            json=body,
            headers=headers,
            catch_response=True,
            name=f"{API}/orders [checkout]",
        ) as placed:
            if placed.status_code == 409:  # cart emptied meanwhile (another tab): not a failure
                placed.success()
                return
            if placed.status_code != 201:
                return
            order = placed.json()
        if body.get("coupon_code"):
            self.coupon = None
        status = self.wait_for_saga(order["id"])
        if status != "AWAITING_PAYMENT":
            return
        choice = random.random()  # noqa: S311
        if choice < 0.8:
            self.client.post(
                self.url("order", f"/orders/{order['id']}/pay"),
                headers=self.auth(),
                name=f"{API}/orders/[id]/pay",
            )
        elif choice < 0.9:
            self.client.post(
                self.url("order", f"/orders/{order['id']}/cancel"),
                headers=self.auth(),
                name=f"{API}/orders/[id]/cancel",
            )
        # else: walks away; the payment timeout cancels the order later.

    def wait_for_saga(self, order_id: int, within: float = 10.0) -> str | None:
        """Poll the order as a checkout page would, until the saga has answered."""
        deadline = time.monotonic() + within
        status = None
        while time.monotonic() < deadline:
            got = self.client.get(
                self.url("order", f"/orders/{order_id}"),
                headers=self.auth(),
                name=f"{API}/orders/[id]",
            )
            if got.status_code == 200:
                status = got.json()["status"]
                if status in FINAL:
                    return str(status)
            time.sleep(0.25)
        return status

    @task(3)
    def my_account(self) -> None:
        if not self.signed_in():
            return
        self.client.get(
            self.url("order", "/orders?page_size=10"), headers=self.auth(), name=f"{API}/orders"
        )
        self.client.get(self.url("trade", "/points"), headers=self.auth(), name=f"{API}/points")

    @task(2)
    def comes_back_as_someone_new(self) -> None:
        """A new visitor takes this user's place: a fresh registration on the next purchase."""
        self.token = None
        self.coupon = None
