"""product service: events layer."""
