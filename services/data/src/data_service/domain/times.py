"""How the data service reads a time it is given: without an offset, it is UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def as_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime; a naive value is taken to be UTC already.

    For times from outside (query parameters, event envelopes) that are
    compared in Python; the timestamp columns read back aware UTC by themselves.
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
