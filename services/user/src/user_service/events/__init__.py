"""user service: events layer (what the service publishes through its outbox)."""
