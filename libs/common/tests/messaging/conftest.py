"""Fixtures of the messaging tests: the tickets test service (ticketing.py) on each database.

Every database fixture runs on SQLite and on MariaDB (meshmart_common.testing).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import MetaData

from libs.common.tests.messaging.ticketing import Base, TicketSettings, build_ticket_app
from meshmart_common.messaging.local_bus import LocalBus
from meshmart_common.settings import Environment
from meshmart_common.testing import TestContext


@pytest.fixture
def service_metadata() -> MetaData:
    """The tickets service's tables."""
    return Base.metadata


@pytest.fixture
def service_app_factory() -> Callable[[TestContext], FastAPI]:
    """Build the tickets app on the test database and a bus file in tmp_path."""

    def factory(ctx: TestContext) -> FastAPI:
        settings = TicketSettings(
            environment=Environment.TEST, database_url=ctx.database_url, var_dir=ctx.tmp_path
        )
        return build_ticket_app(settings, ctx.tmp_path / "bus.db")

    return factory


@pytest.fixture
def bus_path(tmp_path: Path) -> Path:
    """The local bus file of this test."""
    return tmp_path / "bus.db"


@pytest.fixture
async def local_bus(bus_path: Path) -> AsyncIterator[LocalBus]:
    """A started local bus on this test's bus file."""
    bus = LocalBus(bus_path, poll_interval=timedelta(milliseconds=10))
    await bus.start()
    try:
        yield bus
    finally:
        await bus.close()
