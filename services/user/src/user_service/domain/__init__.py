"""user service: domain layer."""
