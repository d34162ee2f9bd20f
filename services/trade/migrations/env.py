"""Alembic environment of the trade service."""

from meshmart_common.db import run_migrations_env
from trade_service.repository.models import Base

run_migrations_env(Base.metadata)
