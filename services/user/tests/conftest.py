"""Fixtures of the user service tests (the shared ones come from meshmart_common.testing)."""

from collections.abc import Callable

import pytest
from fastapi import FastAPI
from sqlalchemy import MetaData

from meshmart_common.settings import Environment
from meshmart_common.testing import TestContext
from user_service.main import build_app
from user_service.repository.models import Base
from user_service.settings import Settings


@pytest.fixture
def service_metadata() -> MetaData:
    """The user service's tables."""
    return Base.metadata


@pytest.fixture
def service_app_factory() -> Callable[[TestContext], FastAPI]:
    """Build the user app on the test database."""

    def factory(ctx: TestContext) -> FastAPI:
        return build_app(
            Settings(
                environment=Environment.TEST, database_url=ctx.database_url, var_dir=ctx.tmp_path
            )
        )

    return factory
