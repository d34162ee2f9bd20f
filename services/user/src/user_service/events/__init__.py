"""user service: events layer."""
