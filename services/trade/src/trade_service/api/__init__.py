"""trade service: api layer."""
