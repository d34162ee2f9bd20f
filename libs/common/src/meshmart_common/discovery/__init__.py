"""Service discovery: self-registration with Consul, resolvers and load balancing.

- ``base``: Endpoint, the Resolver and Balancer protocols, StaticResolver;
- ``registration``: registration_payload, advertised_address, ConsulRegistration;
- ``consul``: ConsulResolver (passing instances, kept fresh by blocking queries);
- ``balancer``: RoundRobin, LeastOutstanding, make_balancer;
- ``lifespan``: discovery_lifespan, the create_app hook that wires it all.
"""

from meshmart_common.discovery.balancer import LeastOutstanding, RoundRobin, make_balancer
from meshmart_common.discovery.base import Balancer, Endpoint, Resolver, StaticResolver
from meshmart_common.discovery.client import consul_client
from meshmart_common.discovery.consul import ConsulResolver
from meshmart_common.discovery.lifespan import discovery_lifespan, registry_check
from meshmart_common.discovery.registration import (
    ConsulRegistration,
    advertised_address,
    go_duration,
    registration_payload,
)

__all__ = [
    "Balancer",
    "ConsulRegistration",
    "ConsulResolver",
    "Endpoint",
    "LeastOutstanding",
    "Resolver",
    "RoundRobin",
    "StaticResolver",
    "advertised_address",
    "consul_client",
    "discovery_lifespan",
    "go_duration",
    "make_balancer",
    "registration_payload",
    "registry_check",
]
