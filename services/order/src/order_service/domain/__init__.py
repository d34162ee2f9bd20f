"""order service: domain layer."""
