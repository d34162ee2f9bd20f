"""Fixtures of the bus contract suite: one run per backend in BUS_BACKENDS.

Adding RocketMQ is one more name in BUS_BACKENDS and one more branch in
``contract_backend`` that returns a ContractBackend for the broker (e.g. from
a ``rocketmq_contract_backend`` fixture that starts or finds the proxy). A
backend's own module may instead import the test functions and override
``contract_backend`` there; the tests only use the ContractBackend interface.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from meshmart_common.messaging.bus import MessageBus
from tests.messaging.backends import ContractBackend, LocalContractBackend

BUS_BACKENDS = ("local",)


@pytest.fixture(params=BUS_BACKENDS)
async def contract_backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[ContractBackend]:
    """The backend under test; every bus it made is closed afterwards."""
    backend: ContractBackend
    if request.param == "local":
        backend = LocalContractBackend(tmp_path / "bus.db")
    else:  # pragma: no cover - a name in BUS_BACKENDS without a branch here
        raise AssertionError(f"no contract backend {request.param!r}")
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture
async def bus(contract_backend: ContractBackend) -> MessageBus:
    """A started bus of the backend under test."""
    return await contract_backend.new_bus()
