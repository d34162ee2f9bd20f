"""trade service: events layer."""
