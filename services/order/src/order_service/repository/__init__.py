"""order service: repository layer."""
