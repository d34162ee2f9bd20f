"""order service: events layer."""
