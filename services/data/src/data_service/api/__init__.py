"""data service: api layer."""
