"""Fixtures of the order service tests (the shared ones come from meshmart_common.testing)."""

from collections.abc import Callable

import pytest
from fastapi import FastAPI
from sqlalchemy import MetaData

from meshmart_common.settings import Environment
from meshmart_common.testing import TestContext
from order_service.main import build_app
from order_service.repository.models import Base
from order_service.settings import Settings


@pytest.fixture
def service_metadata() -> MetaData:
    """The order service's tables."""
    return Base.metadata


@pytest.fixture
def service_app_factory() -> Callable[[TestContext], FastAPI]:
    """Build the order app on the test database."""

    def factory(ctx: TestContext) -> FastAPI:
        return build_app(
            Settings(
                environment=Environment.TEST, database_url=ctx.database_url, var_dir=ctx.tmp_path
            )
        )

    return factory
