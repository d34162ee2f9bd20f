"""SQLAlchemy models of the product service."""

from sqlalchemy.orm import DeclarativeBase

from meshmart_common.db import naming_metadata


class Base(DeclarativeBase):
    """Declarative base of the product service (its own metadata and migrations)."""

    metadata = naming_metadata()
