"""Errors the repositories raise instead of driver exceptions."""


class DuplicateKey(Exception):
    """A unique constraint rejected the row (a concurrent writer got there first)."""
