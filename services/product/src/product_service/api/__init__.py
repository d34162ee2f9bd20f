"""product service: api layer."""
