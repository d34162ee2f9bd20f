"""pytest plugin: a real Apache RocketMQ 5 for the tests that ask for one.

Load it with ``-p meshmart_devstack.pytest_rocketmq``. A test (or fixture) that
takes ``rocketmq_server`` gets a :class:`~meshmart_devstack.rocketmq.RocketMQServer`
started once per session, on free ports, in a temporary folder, with
MeshMart's topics and consumer groups created:

- ``rocketmq_server.endpoints``: the proxy's gRPC endpoint, ``127.0.0.1:<port>``
  (what ``RocketMQBus`` takes);
- ``rocketmq_server.namesrv_addr``: the name server, for admin tools;
- ``rocketmq_server.create_topic(name, "DELAY")`` and
  ``rocketmq_server.create_group(*names)``: fresh topics and groups, so tests
  do not see each other's messages.

Nothing starts unless a test asks for it; the JVMs stop at the end of the
session (and with the pytest process, should it die). When Java or Maven is
missing, or RocketMQ does not come up, the tests that need it fail with what
to install; they are never skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshmart_devstack.rocketmq import (
    INSTALL_HINT,
    Ports,
    RocketMQError,
    RocketMQServer,
    RocketMQSetupError,
)

__all__ = ["rocketmq_server"]


@pytest.fixture(scope="session")
def rocketmq_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RocketMQServer]:
    """A running RocketMQ 5 (name server + proxy with embedded broker) for this session."""
    cache_env = os.environ.get("MESHMART_ROCKETMQ_CACHE")
    cache_dir = Path(cache_env) if cache_env else request.config.rootpath / "var/cache/rocketmq"
    server = RocketMQServer(
        base_dir=tmp_path_factory.mktemp("rocketmq"),
        ports=Ports.free(),
        cache_dir=cache_dir,
        parent_death_signal=True,
    )
    try:
        server.start()
    except RocketMQError as exc:
        missing = isinstance(exc, RocketMQSetupError) and INSTALL_HINT not in str(exc)
        hint = f"\n{INSTALL_HINT}" if missing else ""
        pytest.fail(f"RocketMQ could not start: {exc}{hint}", pytrace=False)
    try:
        yield server
    finally:
        server.stop(timeout=2)  # throwaway data: no need to wait for a graceful end
