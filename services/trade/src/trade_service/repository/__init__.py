"""trade service: repository layer."""
