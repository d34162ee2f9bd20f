"""End to end: the `make run` launcher starts the real processes and they work together."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.stack import RunningStack, launch_stack, launcher_command

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """The launcher on free ports, waited for until it prints that the stack is up."""
    with launch_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running


def test_launcher_prints_every_service_and_its_docs(stack: RunningStack) -> None:
    output = stack.output()
    for name, url in stack.urls.items():
        assert f"{url}/docs" in output, name
        assert httpx.get(f"{url}/readyz").status_code == 200
        docs = httpx.get(f"{url}/docs")
        assert docs.status_code == 200
        assert "swagger" in docs.text.lower()
    assert "admin@meshmart.local" in output


def test_demo_coupons_and_points_are_seeded(stack: RunningStack) -> None:
    login = httpx.post(
        f"{stack.urls['user']}/api/v1/auth/login",
        json={"email": "alice@example.com", "password": "meshmart-demo"},
    )
    assert login.status_code == 200, login.text
    alice = {"Authorization": f"Bearer {login.json()['access_token']}"}
    points = httpx.get(f"{stack.urls['trade']}/api/v1/points", headers=alice).json()
    assert points["balance"] == 500
    claim = httpx.post(
        f"{stack.urls['trade']}/api/v1/coupons/claim", json={"code": "WELCOME10"}, headers=alice
    )
    assert claim.status_code == 201, claim.text


def test_shopper_registers_logs_in_searches_and_reviews(stack: RunningStack) -> None:
    user, product = stack.urls["user"], stack.urls["product"]
    with httpx.Client(timeout=30) as http:
        email = f"e2e-{time.time_ns()}@example.com"
        registered = http.post(
            f"{user}/api/v1/auth/register",
            json={"email": email, "password": "correct horse battery"},
        )
        assert registered.status_code == 201, registered.text
        login = http.post(
            f"{user}/api/v1/auth/login", json={"email": email, "password": "correct horse battery"}
        )
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        me = http.get(f"{user}/api/v1/users/me", headers=headers)
        assert me.json()["email"] == email

        categories = http.get(f"{product}/api/v1/categories").json()
        assert len(categories) == 5
        page = http.get(f"{product}/api/v1/products", params={"page_size": 100}).json()
        assert page["total"] >= 40
        cheap = http.get(
            f"{product}/api/v1/products", params={"max_price": 2000, "sort": "price"}
        ).json()
        prices = [item["price_cents"] for item in cheap["items"]]
        assert prices == sorted(prices)
        assert all(price <= 2000 for price in prices)

        target = page["items"][0]
        # product verifies the token against user's JWKS over real HTTP
        review = http.post(
            f"{product}/api/v1/products/{target['id']}/reviews",
            json={"rating": 4, "title": "Solid", "body": "Does the job."},
            headers=headers,
        )
        assert review.status_code == 201, review.text
        detail = http.get(f"{product}/api/v1/products/{target['id']}").json()
        reviews = http.get(f"{product}/api/v1/products/{target['id']}/reviews").json()
        assert any(r["id"] == review.json()["id"] for r in reviews["items"])
        assert detail["rating_count"] >= 1

        forged = http.post(
            f"{product}/api/v1/products/{target['id']}/reviews",
            json={"rating": 5},
            headers={"Authorization": "Bearer x.y.z"},
        )
        assert forged.status_code == 401
        assert forged.headers["content-type"].startswith("application/problem+json")


def test_seeding_again_does_not_duplicate_demo_data(stack: RunningStack) -> None:
    product = stack.urls["product"]
    before = httpx.get(f"{product}/api/v1/products").json()["total"]
    again = subprocess.run(
        launcher_command("seed", stack.ports, stack.var_dir),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    after = httpx.get(f"{product}/api/v1/products").json()["total"]
    assert after == before
    users = httpx.post(
        f"{stack.urls['user']}/api/v1/auth/login",
        json={"email": "admin@meshmart.local", "password": "meshmart-admin"},
    )
    assert users.status_code == 200
    admin = {"Authorization": f"Bearer {users.json()['access_token']}"}
    listing = httpx.get(
        f"{stack.urls['user']}/api/v1/users", params={"q": "admin@meshmart.local"}, headers=admin
    ).json()
    assert listing["total"] == 1


def test_ctrl_c_stops_every_service(stack: RunningStack) -> None:
    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(timeout=60) == 0
    for url in stack.urls.values():
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/healthz", timeout=2)
    assert "stopped." in stack.output()
