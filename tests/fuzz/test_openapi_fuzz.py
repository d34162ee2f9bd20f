"""Schemathesis against every running service's own OpenAPI document.

The real processes run (started by the `make run` launcher); schemathesis
generates valid and invalid requests for every operation, with an admin token
so the protected paths are explored too. Two properties must hold for every
response: no 5xx, and the response matches the schema the service publishes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import response_schema_conformance
from schemathesis.checks import not_a_server_error

from tests.stack import RunningStack, launch_stack

pytestmark = pytest.mark.e2e

MAX_EXAMPLES = 25
CHECKS = [not_a_server_error, response_schema_conformance]
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """A stack of its own: fuzzing deletes and rewrites data."""
    with launch_stack(tmp_path_factory.mktemp("fuzz")) as running:
        yield running


@pytest.fixture(scope="module")
def admin_headers(fuzz_stack: RunningStack) -> dict[str, str]:
    """Bearer header of the seeded admin."""
    login = httpx.post(
        f"{fuzz_stack.urls['user']}/api/v1/auth/login",
        json={"email": "admin@meshmart.local", "password": "meshmart-admin"},
        timeout=30,
    )
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def _schema(stack: RunningStack, service: str) -> Any:
    return schemathesis.openapi.from_url(f"{stack.urls[service]}/openapi.json")


@pytest.fixture(scope="module")
def user_schema(fuzz_stack: RunningStack) -> Any:
    return _schema(fuzz_stack, "user")


@pytest.fixture(scope="module")
def product_schema(fuzz_stack: RunningStack) -> Any:
    return _schema(fuzz_stack, "product")


@pytest.fixture(scope="module")
def order_schema(fuzz_stack: RunningStack) -> Any:
    return _schema(fuzz_stack, "order")


@pytest.fixture(scope="module")
def trade_schema(fuzz_stack: RunningStack) -> Any:
    return _schema(fuzz_stack, "trade")


@pytest.fixture(scope="module")
def data_schema(fuzz_stack: RunningStack) -> Any:
    return _schema(fuzz_stack, "data")


def _run(case: Any, stack: RunningStack, service: str, headers: dict[str, str]) -> None:
    # Keep the caller's headers when the case sets its own (e.g. a fuzzed Authorization).
    merged = {**headers, **(case.headers or {})}
    case.call_and_validate(base_url=stack.urls[service], headers=merged, checks=CHECKS)


user_api = schemathesis.pytest.from_fixture("user_schema")
product_api = schemathesis.pytest.from_fixture("product_schema")
order_api = schemathesis.pytest.from_fixture("order_schema")
trade_api = schemathesis.pytest.from_fixture("trade_schema")
data_api = schemathesis.pytest.from_fixture("data_schema")


@user_api.parametrize()
@FUZZ_SETTINGS
def test_user_api_never_errors_and_matches_its_schema(
    case: Any, fuzz_stack: RunningStack, admin_headers: dict[str, str]
) -> None:
    _run(case, fuzz_stack, "user", admin_headers)


@product_api.parametrize()
@FUZZ_SETTINGS
def test_product_api_never_errors_and_matches_its_schema(
    case: Any, fuzz_stack: RunningStack, admin_headers: dict[str, str]
) -> None:
    _run(case, fuzz_stack, "product", admin_headers)


@order_api.parametrize()
@FUZZ_SETTINGS
def test_order_api_never_errors_and_matches_its_schema(
    case: Any, fuzz_stack: RunningStack, admin_headers: dict[str, str]
) -> None:
    _run(case, fuzz_stack, "order", admin_headers)


@trade_api.parametrize()
@FUZZ_SETTINGS
def test_trade_api_never_errors_and_matches_its_schema(
    case: Any, fuzz_stack: RunningStack, admin_headers: dict[str, str]
) -> None:
    _run(case, fuzz_stack, "trade", admin_headers)


@data_api.parametrize()
@FUZZ_SETTINGS
def test_data_api_never_errors_and_matches_its_schema(
    case: Any, fuzz_stack: RunningStack, admin_headers: dict[str, str]
) -> None:
    _run(case, fuzz_stack, "data", admin_headers)
