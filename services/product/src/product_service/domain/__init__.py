"""product service: domain layer."""
