"""data service: repository layer."""
