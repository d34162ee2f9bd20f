"""Alembic environment of the user service."""

from meshmart_common.db import run_migrations_env
from user_service.repository.models import Base

run_migrations_env(Base.metadata)
