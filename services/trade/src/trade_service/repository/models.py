"""SQLAlchemy models of the trade service."""

from sqlalchemy.orm import DeclarativeBase

from meshmart_common.db import naming_metadata


class Base(DeclarativeBase):
    """Declarative base of the trade service (its own metadata and migrations)."""

    metadata = naming_metadata()
