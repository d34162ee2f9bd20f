"""Alembic environment of the product service."""

from meshmart_common.db import run_migrations_env
from product_service.repository.models import Base

run_migrations_env(Base.metadata)
