"""The Istio and cert-manager objects: valid against the projects' published CRDs (schema
and CEL rules), and every reference between them resolves, as ``istioctl analyze`` checks."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from tests.deploy import k8s_tools as k8s

MESH_OVERLAYS = [p for p in k8s.overlays() if k8s.ISTIO.resolve() in k8s.components_of(p)]
EXAMPLES = sorted((k8s.ISTIO / "examples").glob("*.yaml"))
INSTALL = k8s.ISTIO / "install" / "istio-operator.yaml"
# Principals outside the rendered namespace: Istio's Prometheus addon (deploy/README.md).
EXTERNAL_PRINCIPALS = {k8s.spiffe("prometheus", "istio-system")}
# Workloads of the mysql and rocketmq components, which prod-like replaces with external ones.
INERT_WITHOUT_COMPONENT = {"mysql", "rocketmq-proxy", "rocketmq-namesrv", "rocketmq-broker"}
# Providers every Istio installation has.
BUILTIN_PROVIDERS = {"envoy", "prometheus"}


def _id(path: Path) -> str:
    return str(path.relative_to(k8s.DEPLOY))


def _custom_resources(manifests: k8s.Manifests) -> list[k8s.Obj]:
    return [o for o in manifests.objects if k8s.is_custom_resource(o)]


def test_the_mesh_overlays_are_the_ones_with_the_istio_component() -> None:
    assert {p.name for p in MESH_OVERLAYS} == {"dev-mesh", "prod-like"}


@pytest.mark.parametrize("path", MESH_OVERLAYS, ids=_id)
def test_every_istio_and_cert_manager_object_validates_against_its_crd(path: Path) -> None:
    objects = _custom_resources(k8s.render(path))
    assert {o["kind"] for o in objects} >= {
        "Gateway",
        "VirtualService",
        "DestinationRule",
        "PeerAuthentication",
        "RequestAuthentication",
        "AuthorizationPolicy",
        "Telemetry",
        "Sidecar",
        "Issuer",
        "Certificate",
    }
    errors = [
        f"{o['kind']}/{o['metadata']['name']}: {error}"
        for o in objects
        for error in k8s.crd_errors(o)
    ]
    assert errors == []


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_validates_against_its_crd(example: Path) -> None:
    for obj in k8s.load_yaml_documents(example.read_text()):
        assert obj["metadata"].get("namespace") == k8s.NAMESPACE
        assert k8s.crd_errors(obj) == []


def test_the_crd_validation_catches_unknown_fields_and_broken_cel_rules() -> None:
    manifests = k8s.render(k8s.K8S / "overlays" / "dev-mesh")
    route = copy.deepcopy(manifests.named("VirtualService", "product"))
    assert route is not None
    route["spec"]["http"][0]["retry"] = {"attempts": 1}
    route["spec"]["http"][0]["timeout"] = "0s"
    errors = k8s.crd_errors(route)
    assert any("'retry' was unexpected" in e for e in errors)
    assert any("duration" in e for e in errors)  # a CEL rule of the CRD
    peer = copy.deepcopy(manifests.named("PeerAuthentication", "default"))
    assert peer is not None
    peer["spec"]["portLevelMtls"] = {"3306": {"mode": "DISABLE"}}
    assert any("selector" in e for e in k8s.crd_errors(peer))
    certificate = copy.deepcopy(manifests.named("Certificate", "meshmart-gateway"))
    assert certificate is not None
    certificate["spec"]["privateKey"]["algorithm"] = "DSA"
    assert k8s.crd_errors(certificate) != []


def _host_ok(manifests: k8s.Manifests, host: str) -> bool:
    return host in manifests.service_hosts() or host in manifests.service_entry_hosts()


def _service_pods(manifests: k8s.Manifests, host: str) -> list[dict[str, str]]:
    service = manifests.service_hosts()[host]
    selector = service["spec"]["selector"]
    return [labels for labels in manifests.pod_labels() if selector.items() <= labels.items()]


def _destinations(virtual_service: k8s.Obj) -> list[k8s.Obj]:
    found = []
    for route in virtual_service["spec"].get("http", []):
        found += [r["destination"] for r in route.get("route", [])]
        if "mirror" in route:
            found.append(route["mirror"])
    return found


def _subsets(manifests: k8s.Manifests, host: str) -> dict[str, dict[str, str]]:
    return {
        subset["name"]: subset.get("labels", {})
        for rule in manifests.of_kind("DestinationRule")
        if rule["spec"]["host"] == host
        for subset in rule["spec"].get("subsets", [])
    }


def _check_routing(manifests: k8s.Manifests, virtual_service: k8s.Obj) -> None:
    name = virtual_service["metadata"]["name"]
    gateways = virtual_service["spec"].get("gateways", ["mesh"])
    for gateway in gateways:
        assert gateway == "mesh" or gateway in manifests.names("Gateway"), (name, gateway)
    if "mesh" in gateways:
        for host in virtual_service["spec"]["hosts"]:
            assert _host_ok(manifests, host), (name, host)
    for destination in _destinations(virtual_service):
        host = destination["host"]
        assert _host_ok(manifests, host), (name, host)
        service = manifests.service_hosts()[host]
        if "port" in destination:
            ports = {p["port"] for p in service["spec"]["ports"]}
            assert destination["port"]["number"] in ports, (name, destination)
        if "subset" in destination:
            subsets = _subsets(manifests, host)
            assert destination["subset"] in subsets, (name, destination)
            labels = subsets[destination["subset"]]
            assert any(labels.items() <= pod.items() for pod in _service_pods(manifests, host))


@pytest.mark.parametrize("path", MESH_OVERLAYS, ids=_id)
def test_routes_name_hosts_ports_subsets_and_gateways_that_exist(path: Path) -> None:
    manifests = k8s.render(path)
    for virtual_service in manifests.of_kind("VirtualService"):
        _check_routing(manifests, virtual_service)
    for rule in manifests.of_kind("DestinationRule"):
        host = rule["spec"]["host"]
        assert _host_ok(manifests, host), rule["metadata"]["name"]
        if host in manifests.service_hosts():
            pods = _service_pods(manifests, host)
            for subset in rule["spec"].get("subsets", []):
                # Every subset's labels pick pods of that Service (a Deployment exists).
                assert any(subset["labels"].items() <= pod.items() for pod in pods), subset


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_names_hosts_and_subsets_of_the_dev_mesh_overlay(example: Path) -> None:
    manifests = k8s.render(k8s.K8S / "overlays" / "dev-mesh")
    for obj in k8s.load_yaml_documents(example.read_text()):
        if obj["kind"] == "VirtualService":
            _check_routing(manifests, obj)
            # It replaces the overlay's own VirtualService of that name.
            assert obj["metadata"]["name"] in manifests.names("VirtualService")


@pytest.mark.parametrize("path", MESH_OVERLAYS, ids=_id)
def test_the_gateway_selects_its_pods_and_its_certificate_secret_exists(path: Path) -> None:
    manifests = k8s.render(path)
    (gateway,) = manifests.of_kind("Gateway")
    assert manifests.selects_pods(gateway["spec"]["selector"])
    secrets = {c["spec"]["secretName"]: c for c in manifests.of_kind("Certificate")}
    hosts = set()
    for server in gateway["spec"]["servers"]:
        hosts |= set(server["hosts"])
        if server["port"]["protocol"] == "HTTPS":
            certificate = secrets[server["tls"]["credentialName"]]
            assert set(server["hosts"]) <= set(certificate["spec"]["dnsNames"])
            issuer = certificate["spec"]["issuerRef"]
            assert manifests.named(issuer["kind"], issuer["name"]) is not None
    gateway_service = manifests.named("Service", "meshmart-gateway")
    assert gateway_service is not None
    service_ports = {p["port"] for p in gateway_service["spec"]["ports"]}
    assert {s["port"]["number"] for s in gateway["spec"]["servers"]} <= service_ports
    for virtual_service in manifests.of_kind("VirtualService"):
        if gateway["metadata"]["name"] in virtual_service["spec"].get("gateways", []):
            assert set(virtual_service["spec"]["hosts"]) <= hosts


@pytest.mark.parametrize("path", MESH_OVERLAYS, ids=_id)
def test_policy_principals_are_service_accounts_and_selectors_pick_pods(path: Path) -> None:
    manifests = k8s.render(path)
    accounts = {k8s.spiffe(name) for name in manifests.names("ServiceAccount")}
    for policy in manifests.of_kind("AuthorizationPolicy"):
        spec = policy.get("spec") or {}
        selector = spec.get("selector", {}).get("matchLabels")
        if selector and not manifests.selects_pods(selector):
            # A policy for an in-cluster component that this overlay replaces is inert.
            assert selector.get("app") in INERT_WITHOUT_COMPONENT, policy["metadata"]["name"]
            continue
        for rule in spec.get("rules", []):
            for source in rule.get("from", []):
                for principal in source["source"].get("principals", []):
                    assert principal in accounts | EXTERNAL_PRINCIPALS, principal
                for namespace in source["source"].get("namespaces", []):
                    assert namespace == k8s.NAMESPACE
    for name in ("RequestAuthentication", "Sidecar", "Telemetry"):
        for obj in manifests.of_kind(name):
            selector = obj["spec"].get("selector", obj["spec"].get("workloadSelector", {}))
            labels = selector.get("matchLabels", selector.get("labels"))
            if labels and not manifests.selects_pods(labels):
                # Inert where the component or the development seeds are not deployed.
                assert (
                    labels.get("app") in INERT_WITHOUT_COMPONENT
                    or labels.get("app.kubernetes.io/component") == "seed"
                ), obj["metadata"]["name"]


@pytest.mark.parametrize("path", MESH_OVERLAYS, ids=_id)
def test_sidecar_egress_hosts_exist(path: Path) -> None:
    manifests = k8s.render(path)
    for sidecar in manifests.of_kind("Sidecar"):
        labels = sidecar["spec"].get("workloadSelector", {}).get("labels")
        if labels and not manifests.selects_pods(labels):
            continue  # inert: its workload is not in this overlay
        for egress in sidecar["spec"]["egress"]:
            for host in egress["hosts"]:
                namespace, _, name = host.partition("/")
                assert namespace == ".", host
                assert _host_ok(manifests, name), f"Sidecar {sidecar['metadata']['name']}: {host}"
        assert sidecar["spec"]["outboundTrafficPolicy"]["mode"] == "REGISTRY_ONLY"


@pytest.mark.parametrize("path", MESH_OVERLAYS, ids=_id)
def test_strict_mtls_and_tokens_checked_against_the_user_service_jwks(path: Path) -> None:
    manifests = k8s.render(path)
    (peer,) = manifests.of_kind("PeerAuthentication")
    assert "selector" not in peer["spec"]
    assert peer["spec"]["mtls"]["mode"] == "STRICT"
    for rule in manifests.of_kind("DestinationRule"):
        if rule["spec"]["host"] in manifests.service_hosts():
            assert rule["spec"]["trafficPolicy"]["tls"]["mode"] == "ISTIO_MUTUAL"
    (authn,) = manifests.of_kind("RequestAuthentication")
    (jwt_rule,) = authn["spec"]["jwtRules"]
    fields = k8s.settings_class("order").model_fields
    assert jwt_rule["issuer"] == fields["jwt_issuer"].default
    assert jwt_rule["audiences"] == [fields["jwt_audience"].default]
    # The services verify the token themselves too: it must reach them.
    assert jwt_rule["forwardOriginalToken"] is True
    url = re.fullmatch(r"http://([^:/]+):(\d+)(/.*)", jwt_rule["jwksUri"])
    assert url is not None
    service = manifests.service_hosts()[url.group(1)]
    assert service["metadata"]["name"] == "user"
    assert int(url.group(2)) in {p["port"] for p in service["spec"]["ports"]}
    assert ("GET", url.group(3)) in {(r.method, r.path) for r in k8s.service_routes("user")}
    # All five services, every pod of each (product v2 too).
    selector = authn["spec"]["selector"]["matchLabels"]
    for labels in manifests.pod_labels():
        if labels.get("app") in k8s.SERVICES and "app.kubernetes.io/component" not in labels:
            assert selector.items() <= labels.items(), labels


def test_the_mesh_install_matches_what_the_component_relies_on() -> None:
    install = yaml.safe_load(INSTALL.read_text())
    env = install["spec"]["values"]["pilot"]["env"]
    # istiod, outside the mesh, cannot fetch a JWKS behind STRICT mTLS: the sidecars must.
    assert env["PILOT_JWT_ENABLE_REMOTE_JWKS"] in {"hybrid", "true", "envoy"}
    # Pods keep the "restricted" Pod Security level only without istio-init's NET_ADMIN.
    assert install["spec"]["components"]["cni"]["enabled"] is True
    namespace = k8s.render(k8s.K8S / "base").named("Namespace", k8s.NAMESPACE)
    assert namespace is not None
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    providers = {p["name"]: p for p in install["spec"]["meshConfig"]["extensionProviders"]}
    for path in MESH_OVERLAYS:
        manifests = k8s.render(path)
        for telemetry in manifests.of_kind("Telemetry"):
            for section in ("tracing", "accessLogging"):
                for entry in telemetry["spec"].get(section, []):
                    for provider in entry["providers"]:
                        assert provider["name"] in set(providers) | BUILTIN_PROVIDERS
        for provider in providers.values():
            target = provider["opentelemetry"]
            service = manifests.service_hosts()[target["service"]]
            assert target["port"] in {p["port"] for p in service["spec"]["ports"]}


def test_the_canary_sends_header_requests_to_v2_and_a_tenth_of_the_rest() -> None:
    manifests = k8s.render(k8s.K8S / "overlays" / "dev-mesh")
    v2 = manifests.named("Deployment", "product-v2")
    assert v2 is not None
    assert v2["spec"]["template"]["metadata"]["labels"]["version"] == "v2"
    for name in ("meshmart-ingress", "product"):
        routes = manifests.named("VirtualService", name)
        assert routes is not None
        product = [r for r in routes["spec"]["http"] if r["name"].startswith("product")]
        canary, *others = product
        assert canary["name"] == "product-canary"
        assert all(m["headers"] == {"x-canary": {"exact": "true"}} for m in canary["match"])
        assert [d["destination"]["subset"] for d in canary["route"]] == ["v2"]
        for route in others:
            weights = {d["destination"]["subset"]: d["weight"] for d in route["route"]}
            assert weights == {"v1": 90, "v2": 10}
    # Without the canary component nothing reaches a v2.
    for virtual_service in k8s.render(k8s.K8S / "overlays" / "prod-like").of_kind("VirtualService"):
        assert {d.get("subset") for d in _destinations(virtual_service)} == {"v1"}


def test_the_istioctl_and_helm_install_files_configure_the_same_mesh() -> None:
    operator = yaml.safe_load(INSTALL.read_text())["spec"]
    helm = yaml.safe_load((k8s.ISTIO / "install" / "istiod-values.yaml").read_text())
    assert helm["pilot"]["env"] == operator["values"]["pilot"]["env"]
    assert helm["meshConfig"] == operator["meshConfig"]
    assert helm["pilot"]["cni"]["enabled"] is operator["components"]["cni"]["enabled"]
