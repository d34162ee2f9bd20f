"""data service: events layer."""
