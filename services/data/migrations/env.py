"""Alembic environment of the data service."""

from data_service.repository.models import Base
from meshmart_common.db import run_migrations_env

run_migrations_env(Base.metadata)
