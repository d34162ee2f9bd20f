"""Every kustomization renders, and every rendered Kubernetes object is valid for the
Kubernetes versions MeshMart supports (strict: unknown fields are errors)."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest

from tests.deploy import k8s_tools as k8s

OVERLAYS = k8s.overlays()
COMPONENTS = [*sorted(p for p in (k8s.K8S / "components").iterdir() if p.is_dir()), k8s.ISTIO]
# A component that builds on another one.
NEEDS = {"product-canary": [k8s.ISTIO]}


def _id(path: Path) -> str:
    return str(path.relative_to(k8s.DEPLOY))


@pytest.mark.parametrize("path", OVERLAYS, ids=_id)
def test_kustomization_renders_into_one_namespace_without_duplicates(path: Path) -> None:
    objects = k8s.render(path).objects
    assert objects
    keys = [(o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(keys) == len(set(keys)), "an object is rendered twice"
    for obj in objects:
        if obj["kind"] != "Namespace":
            # Istio principals and hosts name the namespace (cluster.local/ns/meshmart/...).
            assert obj["metadata"].get("namespace") == k8s.NAMESPACE, obj["metadata"]["name"]


@pytest.mark.parametrize("component", COMPONENTS, ids=_id)
def test_every_component_renders_on_the_base_alone(component: Path, tmp_path: Path) -> None:
    components = [*NEEDS.get(component.name, []), component]
    # kustomize takes relative paths only.
    base = os.path.relpath(k8s.K8S / "base", tmp_path)
    listed = ", ".join(os.path.relpath(c, tmp_path) for c in components)
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: meshmart\n"
        f"resources: [{base}]\ncomponents: [{listed}]\n"
    )
    objects = k8s.build(tmp_path)
    base_names = {(o["kind"], o["metadata"]["name"]) for o in k8s.render(k8s.K8S / "base").objects}
    assert {(o["kind"], o["metadata"]["name"]) for o in objects} != base_names


def test_every_component_is_used_by_an_overlay() -> None:
    used = {c for overlay in OVERLAYS for c in k8s.components_of(overlay)}
    assert {c.resolve() for c in COMPONENTS} <= used


def test_every_kustomization_under_deploy_is_an_overlay_or_a_component() -> None:
    for path in k8s.kustomization_dirs():
        if path.is_relative_to(k8s.DEPLOY / "k8s") or path.is_relative_to(k8s.ISTIO):
            assert path in OVERLAYS or k8s.is_component(path), path


@pytest.mark.parametrize("version", k8s.KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", OVERLAYS, ids=_id)
def test_every_kubernetes_object_validates_strictly(path: Path, version: str) -> None:
    errors = [
        f"{o['kind']}/{o['metadata']['name']}: {error}"
        for o in k8s.render(path).objects
        if not k8s.is_custom_resource(o)
        for error in k8s.kubernetes_errors(o, version)
    ]
    assert errors == []


def test_the_kubernetes_validation_refuses_unknown_fields_and_removed_apis() -> None:
    deployment = copy.deepcopy(k8s.render(k8s.K8S / "base").named("Deployment", "user"))
    assert deployment is not None
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["livenesProbe"] = container.pop("livenessProbe")
    deployment["spec"]["replicas"] = "2"
    errors = k8s.kubernetes_errors(deployment, k8s.KUBERNETES_MIN)
    assert any("livenesProbe" in e for e in errors)
    assert any("replicas" in e for e in errors)
    removed = {"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget", "metadata": {}}
    assert k8s.kubernetes_errors(removed, k8s.KUBERNETES_MIN) != []


@pytest.mark.parametrize(
    ("config_map", "key", "source"),
    [
        ("rocketmq-topic-script", "create-topics.sh", "rocketmq/create-topics.sh"),
        ("rocketmq-topic-script", "topology.txt", "rocketmq/topology.txt"),
        (
            "mysql-init",
            "10-meshmart-databases.sql",
            "compose/mysql/initdb/10-meshmart-databases.sql",
        ),
    ],
)
def test_the_cluster_gets_the_very_files_compose_uses(
    config_map: str, key: str, source: str
) -> None:
    # Generated from the files themselves by the components beside them.
    rendered = k8s.render(k8s.K8S / "overlays/dev")
    [found] = [
        obj
        for obj in rendered.of_kind("ConfigMap")
        # The generator's name, with or without its content-hash suffix.
        if obj["metadata"]["name"].rsplit("-", 1)[0] == config_map
        or obj["metadata"]["name"] == config_map
    ]
    assert found["data"][key] == (k8s.DEPLOY / source).read_text(), (
        f"the {config_map} ConfigMap differs from deploy/{source}"
    )
