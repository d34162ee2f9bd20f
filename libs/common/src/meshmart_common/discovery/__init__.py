"""Service discovery: self-registration with Consul, resolvers and load balancing."""

from meshmart_common.discovery.base import Balancer, Endpoint, Resolver, StaticResolver

__all__ = ["Balancer", "Endpoint", "Resolver", "StaticResolver"]
