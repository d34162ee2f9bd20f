"""Schemathesis against every running service's own OpenAPI document.

The real processes run (started by the `make run` launcher). For every
operation in a service's /openapi.json, schemathesis generates valid
(positive) and invalid (negative) requests, sent with an admin token so the
protected paths are explored too. Two properties must hold for every
response: it is not a 5xx, and it matches the schema the service publishes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.stack import SERVICES, RunningStack, launch_stack

pytestmark = pytest.mark.e2e

MAX_EXAMPLES = 20
CHECKS = [not_a_server_error, response_schema_conformance]


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


def _fuzz_operation(
    operation: Any, mode: GenerationMode, base_url: str, headers: dict[str, str]
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def run(case: Any) -> None:
        # The caller's own headers win, so fuzzed Authorization values are sent too.
        merged = {**headers, **(case.headers or {})}
        case.call_and_validate(base_url=base_url, headers=merged, checks=CHECKS)

    run()


@pytest.mark.parametrize("service", SERVICES)
def test_api_never_answers_5xx_and_matches_its_own_schema(
    service: str, fuzz_stack: RunningStack, admin_headers: dict[str, str]
) -> None:
    base_url = fuzz_stack.urls[service]
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations: list[Any] = []
    failures: list[str] = []
    for result in schema.get_all_operations():
        if isinstance(result, Ok):
            operations.append(result.ok())
        else:
            failures.append(f"invalid operation in the schema: {result.err()}")
    assert operations, f"{service} publishes no operations"
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz_operation(operation, mode, base_url, admin_headers)
            except Unsatisfiable:
                # An operation without parameters or body has no invalid request.
                assert mode is GenerationMode.NEGATIVE
            except Exception as exc:  # collect every failing operation, not just the first
                failures.append(
                    f"{operation.method.upper()} {operation.path} [{mode.value}]: {exc}"
                )
    assert not failures, "\n\n".join(failures)
