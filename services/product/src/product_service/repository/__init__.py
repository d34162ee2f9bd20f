"""product service: repository layer."""
