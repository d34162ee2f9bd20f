"""user service: repository layer."""
