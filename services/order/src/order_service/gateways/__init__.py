"""order service: gateways to the services it calls over REST (product, trade).

Each gateway implements a port of order_service.domain.ports on top of a
meshmart_common ServiceClient, bound to the caller of the current request.
"""
