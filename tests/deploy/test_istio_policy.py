"""The mesh allows exactly the calls the code makes, and the gateway exactly the public API.

The call graph comes from the code (k8s_tools.code_calls: every ServiceClient request in
the services' sources, attributed to the service whose API serves it, plus the JWKS
fetch of every token verifier); the routes and which are admin-only from each service's
FastAPI app. The AuthorizationPolicies, Sidecars and NetworkPolicies are evaluated with
Istio's and Kubernetes' matching rules against both.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.deploy import k8s_tools as k8s

MESH_OVERLAYS = [p for p in k8s.overlays() if k8s.ISTIO.resolve() in k8s.components_of(p)]
POLICED_OVERLAYS = [
    p
    for p in k8s.overlays()
    if (k8s.K8S / "components" / "network-policies").resolve() in k8s.components_of(p)
]
GATEWAY = k8s.spiffe("meshmart-gateway")
PROMETHEUS = k8s.spiffe("prometheus", "istio-system")
PLATFORM_PATHS = {"/healthz", "/readyz", "/metrics"}
JWKS = ("GET", "/.well-known/jwks.json")
# Not public: each service's own admin API (reach it with kubectl port-forward; the
# service checks the admin token) and the quote that order asks trade for.
ADMIN_APIS = "/api/v1/admin/"
INTERNAL_ONLY = {"trade": {("POST", "/api/v1/quotes")}}


def _id(path: Path) -> str:
    return str(path.relative_to(k8s.DEPLOY))


def _pod_labels(manifests: k8s.Manifests, service: str) -> dict[str, str]:
    deployment = manifests.named("Deployment", service)
    assert deployment is not None
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def _allowed(
    manifests: k8s.Manifests,
    principal: str | None,
    service: str,
    method: str,
    path: str,
    claims: Mapping[str, str] | None = None,
) -> bool:
    namespace = principal.split("/")[2] if principal else None
    request = k8s.Request(principal, namespace, method, path, k8s.SERVICES[service], claims or {})
    return k8s.authorization_allows(manifests, _pod_labels(manifests, service), request)


def _sidecar_jwks_fetchers(manifests: k8s.Manifests) -> set[str]:
    """Services whose sidecars fetch the JWKS (RequestAuthentication selects them)."""
    (authn,) = manifests.of_kind("RequestAuthentication")
    selector = authn["spec"]["selector"]["matchLabels"]
    return {s for s in k8s.SERVICES if selector.items() <= _pod_labels(manifests, s).items()}


def test_the_call_graph_is_what_the_architecture_says() -> None:
    edges = {(c.caller, c.callee, c.method, c.path) for c in k8s.code_calls()}
    assert ("order", "product", "GET", "/api/v1/products/7") in edges
    assert ("order", "trade", "POST", "/api/v1/quotes") in edges
    assert {(c, "user", *JWKS) for c in ("product", "order", "trade", "data")} <= edges
    assert {(c.caller, c.callee) for c in k8s.code_calls() if c.callee != "user"} == {
        ("order", "product"),
        ("order", "trade"),
    }


@pytest.mark.parametrize("path", MESH_OVERLAYS, ids=_id)
def test_every_call_the_code_makes_is_allowed(path: Path) -> None:
    manifests = k8s.render(path)
    for call in k8s.code_calls():
        assert _allowed(manifests, k8s.spiffe(call.caller), call.callee, call.method, call.path), (
            f"{call.where}: {call.caller} -> {call.callee} {call.method} {call.path} is denied"
        )
    for service in _sidecar_jwks_fetchers(manifests):
        assert _allowed(manifests, k8s.spiffe(service), "user", *JWKS), service


@pytest.mark.parametrize("path", MESH_OVERLAYS, ids=_id)
def test_no_service_may_call_another_beyond_what_the_code_calls(path: Path) -> None:
    manifests = k8s.render(path)
    expected = {(c.caller, c.callee, c.method, c.path) for c in k8s.code_calls()}
    expected |= {(s, "user", *JWKS) for s in _sidecar_jwks_fetchers(manifests)}
    allowed = set()
    for caller in k8s.SERVICES:
        for callee in k8s.SERVICES:
            for route in k8s.service_routes(callee):
                for claims in ({}, {"role": "admin"}):
                    if _allowed(
                        manifests,
                        k8s.spiffe(caller),
                        callee,
                        route.method,
                        route.sample_path(),
                        claims,
                    ):
                        allowed.add((caller, callee, route.method, route.sample_path()))
    assert allowed == expected


@pytest.mark.parametrize("path", MESH_OVERLAYS, ids=_id)
def test_the_gateway_reaches_the_public_api_and_admin_routes_only_with_an_admin_token(
    path: Path,
) -> None:
    manifests = k8s.render(path)
    ingress = manifests.named("VirtualService", "meshmart-ingress")
    assert ingress is not None
    public = 0
    for service in k8s.SERVICES:
        host = f"{service}.{k8s.NAMESPACE}.svc.cluster.local"
        for route in k8s.service_routes(service):
            where = f"{service} {route.method} {route.path}"
            sample = route.sample_path()
            routed = k8s.ingress_destination(ingress, route.method, sample)
            if routed is not None:
                hosts = {d["destination"]["host"] for d in routed["route"]}
                assert hosts == {host}, f"the gateway sends {where} to {hosts}"
            as_customer = _allowed(
                manifests, GATEWAY, service, route.method, sample, {"role": "customer"}
            )
            anonymous = _allowed(manifests, GATEWAY, service, route.method, sample)
            as_admin = _allowed(
                manifests, GATEWAY, service, route.method, sample, {"role": "admin"}
            )
            internal = route.path in PLATFORM_PATHS or route.path.startswith(ADMIN_APIS)
            internal |= (route.method, route.path) in INTERNAL_ONLY.get(service, set())
            if internal:
                assert routed is None, f"{where} is internal but the gateway routes it"
            else:
                assert routed is not None, f"{where}: add it to the gateway's routes"
            if routed is None:
                assert not as_customer, f"{where} is not public but allowed"
                assert not as_admin, f"{where} is not public but allowed"
            elif route.admin:
                assert as_admin, where
                assert not as_customer, f"{where} is for admins only"
                assert not anonymous, f"{where} is for admins only"
                public += 1
            else:
                # The service itself decides about the caller's token (401/403).
                assert as_customer, where
                assert anonymous, where
                public += 1
    assert public > 30


@pytest.mark.parametrize("path", MESH_OVERLAYS, ids=_id)
def test_every_gateway_route_leads_to_an_operation(path: Path) -> None:
    ingress = k8s.render(path).named("VirtualService", "meshmart-ingress")
    assert ingress is not None
    for http in ingress["spec"]["http"]:
        (service,) = {d["destination"]["host"].split(".")[0] for d in http["route"]}
        for match in http["match"]:
            prefix = match["uri"]["prefix"]
            assert any(r.path.startswith(prefix) for r in k8s.service_routes(service)), prefix


@pytest.mark.parametrize("path", MESH_OVERLAYS, ids=_id)
def test_reads_are_retried_and_writes_only_when_they_never_reached_a_pod(path: Path) -> None:
    ingress = k8s.render(path).named("VirtualService", "meshmart-ingress")
    assert ingress is not None
    for http in ingress["spec"]["http"]:
        methods = {m.get("method", {}).get("exact") for m in http["match"]}
        conditions = set(http["retries"]["retryOn"].split(","))
        assert "timeout" in http
        if methods == {"GET"}:
            assert "5xx" in conditions, http["name"]
        else:
            assert conditions <= {"connect-failure", "refused-stream"}, http["name"]


@pytest.mark.parametrize("path", MESH_OVERLAYS, ids=_id)
def test_prometheus_reads_metrics_and_nothing_else(path: Path) -> None:
    manifests = k8s.render(path)
    for service in k8s.SERVICES:
        for route in k8s.service_routes(service):
            allowed = _allowed(manifests, PROMETHEUS, service, route.method, route.sample_path())
            assert allowed == ((route.method, route.path) == ("GET", "/metrics")), route


@pytest.mark.parametrize("path", MESH_OVERLAYS, ids=_id)
def test_each_sidecar_knows_exactly_the_services_its_workload_calls(path: Path) -> None:
    manifests = k8s.render(path)
    infrastructure = {"otel-collector"}
    for service in k8s.SERVICES:
        sidecar = manifests.named("Sidecar", service)
        assert sidecar is not None
        hosts = {h.split("/", 1)[1] for e in sidecar["spec"]["egress"] for h in e["hosts"]}
        names = {h.split(".")[0] for h in hosts if h.endswith(".svc.cluster.local")}
        calls = {c.callee for c in k8s.code_calls() if c.caller == service}
        if service in _sidecar_jwks_fetchers(manifests):
            calls.add("user")
        assert names & set(k8s.SERVICES) == calls, service
        # And the data stores: in-cluster ones or the external ServiceEntries.
        others = hosts - {f"{n}.{k8s.NAMESPACE}.svc.cluster.local" for n in calls | infrastructure}
        assert len(others) == 2, (service, others)  # MySQL and the RocketMQ proxy


def _selects(selector: Mapping[str, object], labels: Mapping[str, str]) -> bool:
    match_labels = selector.get("matchLabels", {})
    assert isinstance(match_labels, dict)
    if not match_labels.items() <= labels.items():
        return False
    expressions = selector.get("matchExpressions", [])
    assert isinstance(expressions, list)
    for expression in expressions:
        value = labels.get(expression["key"])
        if expression["operator"] == "In" and value not in expression["values"]:
            return False
        if expression["operator"] == "Exists" and value is None:
            return False
    return True


def _port_matches(port: Mapping[str, object], number: int, name: str) -> bool:
    return port.get("port") in (number, name)


def _network_allows(
    manifests: k8s.Manifests,
    source: Mapping[str, str],
    target: Mapping[str, str],
    port: int,
    port_name: str,
) -> bool:
    """Kubernetes NetworkPolicy semantics within the namespace: the source's egress and
    the target's ingress must both allow the connection."""

    def direction(pod: Mapping[str, str], peer: Mapping[str, str], kind: str) -> bool:
        policies = [
            p
            for p in manifests.of_kind("NetworkPolicy")
            if kind in p["spec"].get("policyTypes", ["Ingress"])
            and _selects(p["spec"]["podSelector"], pod)
        ]
        if not policies:
            return True
        key = "to" if kind == "Egress" else "from"
        for policy in policies:
            for rule in policy["spec"].get(kind.lower(), []):
                peers = rule.get(key)
                peer_ok = peers is None or any(
                    "podSelector" in p
                    and "namespaceSelector" not in p
                    and _selects(p["podSelector"], peer)
                    for p in peers
                )
                ports = rule.get("ports")
                port_ok = ports is None or any(_port_matches(p, port, port_name) for p in ports)
                if peer_ok and port_ok:
                    return True
        return False

    return direction(source, target, "Egress") and direction(target, source, "Ingress")


@pytest.mark.parametrize("path", POLICED_OVERLAYS, ids=_id)
def test_network_policies_allow_the_calls_and_no_other_service_to_service_traffic(
    path: Path,
) -> None:
    manifests = k8s.render(path)
    # Every service may reach user's JWKS: its verifier, or in the mesh its sidecar
    # (user's own sidecar too), fetches it.
    edges = {(c.caller, c.callee) for c in k8s.code_calls()} | {(s, "user") for s in k8s.SERVICES}
    if k8s.ISTIO.resolve() in k8s.components_of(path):
        gateway = manifests.named("Deployment", "meshmart-gateway")
        assert gateway is not None
        gateway_labels = gateway["spec"]["template"]["metadata"]["labels"]
        for service in k8s.SERVICES:
            labels = _pod_labels(manifests, service)
            assert _network_allows(manifests, gateway_labels, labels, k8s.SERVICES[service], "http")
    for caller in k8s.SERVICES:
        for callee in k8s.SERVICES:
            allowed = _network_allows(
                manifests,
                _pod_labels(manifests, caller),
                _pod_labels(manifests, callee),
                k8s.SERVICES[callee],
                "http",
            )
            assert allowed == ((caller, callee) in edges), (caller, callee)
