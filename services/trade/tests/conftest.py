"""Fixtures of the trade service tests (the shared ones come from meshmart_common.testing)."""

from collections.abc import Callable

import pytest
from fastapi import FastAPI
from sqlalchemy import MetaData

from meshmart_common.settings import Environment
from meshmart_common.testing import TestContext
from trade_service.main import build_app
from trade_service.repository.models import Base
from trade_service.settings import Settings


@pytest.fixture
def service_metadata() -> MetaData:
    """The trade service's tables."""
    return Base.metadata


@pytest.fixture
def service_app_factory() -> Callable[[TestContext], FastAPI]:
    """Build the trade app on the test database."""

    def factory(ctx: TestContext) -> FastAPI:
        return build_app(
            Settings(
                environment=Environment.TEST, database_url=ctx.database_url, var_dir=ctx.tmp_path
            )
        )

    return factory
