"""Events and messaging: CloudEvents envelope, outbox, consumers, bus backends."""
