"""user service: api layer."""
