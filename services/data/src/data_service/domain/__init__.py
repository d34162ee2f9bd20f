"""data service: domain layer."""
