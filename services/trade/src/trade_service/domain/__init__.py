"""trade service: domain layer."""
