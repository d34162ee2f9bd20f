"""data service: events layer (the consumer handler that feeds ingest)."""
