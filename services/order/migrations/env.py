"""Alembic environment of the order service."""

from meshmart_common.db import run_migrations_env
from order_service.repository.models import Base

run_migrations_env(Base.metadata)
