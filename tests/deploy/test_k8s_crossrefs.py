"""What a schema cannot see: references between the rendered objects, hardened pods,
and every setting a service reads set to something it accepts."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.deploy import k8s_tools as k8s

OVERLAYS = k8s.overlays()
# Secrets an operator creates (deploy/README.md); the mysql and development components
# make their own for development clusters.
OPERATOR_SECRETS = {f"{s}-db" for s in k8s.SERVICES} | {"user-jwt", "user-admin"}
# Variables the services' Settings do not declare: the OpenTelemetry SDK's, the
# logging format (issue #5), and the process environment.
FOREIGN_ENV = re.compile(r"^(OTEL_[A-Z_]+|LOG_FORMAT|HOME|PYTHON[A-Z_]*|POD_NAME)$")
ISTIO_PROTOCOLS = (
    "http",
    "http2",
    "https",
    "grpc",
    "grpc-web",
    "tcp",
    "tls",
    "mongo",
    "mysql",
    "redis",
)


def _id(path: Path) -> str:
    return str(path.relative_to(k8s.DEPLOY))


def _containers(template: k8s.Obj) -> Iterator[k8s.Obj]:
    spec = template["spec"]
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def _secret_values_known(manifests: k8s.Manifests) -> dict[tuple[str, str], str]:
    import base64

    values = {}
    for secret in manifests.of_kind("Secret"):
        for key, value in secret.get("data", {}).items():
            values[(secret["metadata"]["name"], key)] = base64.b64decode(value).decode()
        for key, value in secret.get("stringData", {}).items():
            values[(secret["metadata"]["name"], key)] = value
    return values


def container_env(manifests: k8s.Manifests, container: k8s.Obj) -> dict[str, str]:
    """The environment a container starts with; Secret values the render lacks become
    placeholders that pass the services' validation, "$(VAR)" references are expanded."""
    env: dict[str, str] = {}
    secrets = _secret_values_known(manifests)
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            config_map = manifests.named("ConfigMap", source["configMapRef"]["name"])
            assert config_map is not None, source
            env.update(config_map.get("data", {}))
        if "secretRef" in source:
            name = source["secretRef"]["name"]
            env.update({k: v for (s, k), v in secrets.items() if s == name})
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = re.sub(
                r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), var["value"]
            )
        elif "configMapKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["configMapKeyRef"]
            config_map = manifests.named("ConfigMap", ref["name"])
            assert config_map is not None, ref
            env[var["name"]] = config_map["data"][ref["key"]]
        elif "secretKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = secrets.get(
                (ref["name"], ref["key"]), f"operator-secret-{ref['name']}-{ref['key']}"
            )
        else:
            env[var["name"]] = "from-the-downward-api"
    return env


def service_containers(manifests: k8s.Manifests) -> Iterator[tuple[str, k8s.Obj, k8s.Obj]]:
    """(service, workload, container) of every container that runs a service's image."""
    for workload, template in manifests.pod_templates():
        for container in _containers(template):
            match = re.search(r"meshmart/(\w+):", container["image"])
            if match and match.group(1) in k8s.SERVICES:
                yield match.group(1), workload, container


@pytest.mark.parametrize("path", OVERLAYS, ids=_id)
def test_every_workload_has_probes_limits_and_a_hardened_security_context(path: Path) -> None:
    manifests = k8s.render(path)
    for workload, template in manifests.pod_templates():
        name = f"{workload['kind']}/{workload['metadata']['name']}"
        pod = template["spec"]
        pod_security = pod.get("securityContext", {})
        assert pod_security.get("runAsNonRoot") is True, name
        assert pod_security.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        # No Kubernetes API token in any pod (none of them calls the API).
        assert pod.get("automountServiceAccountToken") is False, name
        account = manifests.named("ServiceAccount", pod.get("serviceAccountName", "default"))
        assert account is not None, f"{name}: its ServiceAccount is not rendered"
        assert account.get("automountServiceAccountToken") is False, name
        for container in _containers(template):
            where = f"{name} container {container['name']}"
            security = container.get("securityContext", {})
            assert security.get("allowPrivilegeEscalation") is False, where
            assert security.get("readOnlyRootFilesystem") is True, where
            assert security.get("capabilities", {}).get("drop") == ["ALL"], where
            assert "add" not in security.get("capabilities", {}), where
            resources = container.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), where
            assert {"cpu", "memory"} <= set(resources.get("limits", {})), where
            assert not container["image"].endswith(":latest"), where
            if workload["kind"] != "Job":
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    assert probe in container, f"{where} has no {probe}"


@pytest.mark.parametrize("path", OVERLAYS, ids=_id)
def test_the_services_probe_healthz_for_liveness_and_readyz_for_readiness(path: Path) -> None:
    manifests = k8s.render(path)
    for service, workload, container in service_containers(manifests):
        if workload["kind"] == "Job":
            continue
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", service
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz", service
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", service
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http": k8s.SERVICES[service]}


@pytest.mark.parametrize("path", OVERLAYS, ids=_id)
def test_every_env_var_a_service_reads_is_set_and_its_settings_load(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = k8s.render(path)
    seen = set()
    for service, workload, container in service_containers(manifests):
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        env = container_env(manifests, container)
        reads = k8s.settings_env_names(service)
        required = {name for name, needed in reads.items() if needed}
        assert required <= set(env), f"{where} lacks {required - set(env)}"
        unknown = {n for n in env if n not in reads and not FOREIGN_ENV.match(n)}
        assert unknown == set(), f"{where} sets variables {service} does not read: {unknown}"
        assert env["PORT"] == str(k8s.SERVICES[service]), where
        assert env.get("OTEL_SERVICE_NAME") == service, where
        # The settings load from exactly this environment (production refuses
        # development secrets and missing keys: this is where that would show).
        with monkeypatch.context() as patch:
            for name in reads:
                patch.delenv(name, raising=False)
            for name, value in env.items():
                patch.setenv(name, value)
            settings = k8s.settings_class(service)(_env_file=None)
        assert settings.port == k8s.SERVICES[service]
        seen.add(service)
    assert seen == set(k8s.SERVICES)


@pytest.mark.parametrize("path", OVERLAYS, ids=_id)
def test_the_service_urls_in_the_settings_name_rendered_services(path: Path) -> None:
    manifests = k8s.render(path)
    services = {s["metadata"]["name"]: s for s in manifests.of_kind("Service")}
    for service, _workload, container in service_containers(manifests):
        env = container_env(manifests, container)
        for name in ("JWKS_URL", "PRODUCT_URL", "TRADE_URL"):
            if name not in env:
                continue
            url = urlsplit(env[name])
            target = services.get(str(url.hostname))
            assert target is not None, f"{service} {name}={env[name]}"
            assert url.port in {p["port"] for p in target["spec"]["ports"]}, env[name]
        if env.get("DISCOVERY_BACKEND") == "consul":
            assert urlsplit(env["CONSUL_HTTP_ADDR"]).hostname in services


@pytest.mark.parametrize("path", OVERLAYS, ids=_id)
def test_config_maps_secrets_and_service_accounts_that_pods_name_exist(path: Path) -> None:
    manifests = k8s.render(path)
    config_maps = manifests.names("ConfigMap")
    secrets = manifests.names("Secret")
    missing_secrets: set[str] = set()
    for workload, template in manifests.pod_templates():
        name = workload["metadata"]["name"]
        for volume in template["spec"].get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps, name
            if "secret" in volume:
                missing_secrets.add(volume["secret"]["secretName"])
        for container in _containers(template):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps, name
                if "secretRef" in source:
                    missing_secrets.add(source["secretRef"]["name"])
            for var in container.get("env", []):
                ref = var.get("valueFrom", {})
                if "configMapKeyRef" in ref:
                    assert ref["configMapKeyRef"]["name"] in config_maps, name
                if "secretKeyRef" in ref:
                    missing_secrets.add(ref["secretKeyRef"]["name"])
    missing_secrets -= secrets
    assert missing_secrets <= OPERATOR_SECRETS
    readme = (k8s.DEPLOY / "README.md").read_text()
    for secret in missing_secrets:
        assert secret in readme, f"deploy/README.md does not say how to create {secret}"


@pytest.mark.parametrize("path", OVERLAYS, ids=_id)
def test_selectors_and_targets_match_what_is_rendered(path: Path) -> None:
    manifests = k8s.render(path)
    for workload in manifests.of_kind("Deployment", "StatefulSet"):
        selector = workload["spec"]["selector"]["matchLabels"]
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), workload["metadata"]["name"]
        if workload["kind"] == "StatefulSet":
            assert workload["spec"]["serviceName"] in manifests.names("Service")
    for service in manifests.of_kind("Service"):
        name = service["metadata"]["name"]
        selector = service["spec"]["selector"]
        pods = [
            t
            for _, t in manifests.pod_templates()
            if selector.items() <= t["metadata"].get("labels", {}).items()
        ]
        assert pods, f"Service {name} selects no pod"
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for template in pods:
                declared = {
                    p.get("name"): p["containerPort"]
                    for c in template["spec"]["containers"]
                    for p in c.get("ports", [])
                }
                assert target in declared or target in declared.values(), (name, target)
        # Jobs must never become endpoints of a Service.
        for workload, template in manifests.pod_templates():
            if workload["kind"] == "Job":
                assert not selector.items() <= template["metadata"].get("labels", {}).items()
    for budget in manifests.of_kind("PodDisruptionBudget"):
        assert manifests.selects_pods(budget["spec"]["selector"]["matchLabels"])
    for autoscaler in manifests.of_kind("HorizontalPodAutoscaler"):
        target = autoscaler["spec"]["scaleTargetRef"]
        scaled = manifests.named(target["kind"], target["name"])
        assert scaled is not None, autoscaler["metadata"]["name"]
        if path.name == "prod-like":
            # The autoscaler owns the count; `kubectl apply` must not reset it.
            assert "replicas" not in scaled["spec"], target["name"]


@pytest.mark.parametrize("path", OVERLAYS, ids=_id)
def test_every_service_port_names_its_protocol_for_istio(path: Path) -> None:
    for service in k8s.render(path).of_kind("Service"):
        for port in service["spec"]["ports"]:
            name = port["name"]
            protocol = name.split("-")[0]
            assert protocol in ISTIO_PROTOCOLS, f"{service['metadata']['name']} port {name}"
            # appProtocol says the same, explicitly (it wins over the name in Istio).
            assert port.get("appProtocol") == protocol, f"{service['metadata']['name']} {name}"


def test_the_database_urls_use_the_accounts_of_the_mysql_init_script() -> None:
    sql = (k8s.DEPLOY / "compose/mysql/initdb/10-meshmart-databases.sql").read_text()
    accounts = dict(
        re.findall(r"CREATE USER IF NOT EXISTS '(\w+)'@'%' IDENTIFIED BY '([^']+)'", sql)
    )
    grants = dict((user, db) for db, user in re.findall(r"ON `(\w+)`\.\* TO '(\w+)'@'%'", sql))
    manifests = k8s.render(k8s.K8S / "overlays" / "dev")
    secrets = _secret_values_known(manifests)
    for service in k8s.SERVICES:
        name = _generated_name(manifests, "Secret", f"{service}-db")
        url = urlsplit(secrets[(name, "DATABASE_URL")])
        assert url.scheme == "mysql+aiomysql"
        assert url.hostname == "mysql"
        assert url.port == 3306
        assert url.username is not None
        assert accounts.get(url.username) == url.password, service
        assert grants.get(url.username) == url.path.lstrip("/"), service
    # One account per service, each on its own database.
    assert len(set(grants.values())) == len(k8s.SERVICES)


def _overlay_env(path: Path) -> dict[str, Any]:
    manifests = k8s.render(path)
    config = manifests.named(
        "ConfigMap", _generated_name(manifests, "ConfigMap", "meshmart-common")
    )
    assert config is not None
    data: dict[str, Any] = config["data"]
    return data


def _generated_name(manifests: k8s.Manifests, kind: str, prefix: str) -> str:
    """The name kustomize gave a generated object (prefix + content hash)."""
    (name,) = [n for n in manifests.names(kind) if re.fullmatch(rf"{prefix}-[a-z0-9]{{10}}", n)]
    return name


@pytest.mark.parametrize("path", OVERLAYS, ids=_id)
def test_consul_discovery_and_the_mesh_are_never_combined(path: Path) -> None:
    # Under STRICT mTLS a call to a pod IP bypasses mTLS and is refused: Consul's checks
    # and discovered instances cannot work in the mesh (components/consul/README.md).
    mesh = k8s.ISTIO.resolve() in k8s.components_of(path) if path.name != "base" else False
    consul = _overlay_env(path)["DISCOVERY_BACKEND"] == "consul"
    assert not (mesh and consul)
