"""order service: api layer."""
