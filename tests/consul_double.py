"""A stateful Consul agent test double (placeholder: being written)."""
