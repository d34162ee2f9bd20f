"""What the Kubernetes and Istio checks of tests/deploy need: kustomize, the schemas, the renders.

Nothing here talks to a cluster. The tools come from the registries once and stay
under ``var/cache/deploy/`` (gitignored; Go's module and build caches stay in Go's
default places), so a warm run builds nothing:

- kustomize, built with ``go install`` (the Go toolchain is on every MeshMart machine);
- Istio's CRDs from the ``istio.io/api`` Go module and cert-manager's from its module,
  fetched with ``go mod download``; their ``openAPIV3Schema`` become JSON Schemas, with
  unknown fields refused as the API server's strict field validation does;
- the Kubernetes OpenAPI schemas from the kubernetes-validate package (strict variant).

When Go is missing the checks fail and say what to install; they never skip.
"""

from __future__ import annotations

import ast
import contextlib
import fcntl
import functools
import importlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import celpy
import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import yaml
from celpy import celtypes
from celpy.adapter import json_to_cel
from referencing import Registry, Resource

# Each service listens on the port `make run` gives it, in the cluster too.
from meshmart_devstack.launcher import SERVICES as SERVICES

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
K8S = DEPLOY / "k8s"
ISTIO = DEPLOY / "istio"
CACHE = Path(os.environ.get("MESHMART_DEPLOY_CACHE", REPO_ROOT / "var" / "cache" / "deploy"))

KUSTOMIZE_MODULE = "sigs.k8s.io/kustomize/kustomize/v5"
# v5.8.1 is the newest kustomize that builds with the machine's Go 1.26.
KUSTOMIZE_VERSION = "v5.8.1"
ISTIO_API_MODULE = "istio.io/api"
ISTIO_API_VERSION = "v1.31.4"
CERT_MANAGER_MODULE = "github.com/cert-manager/cert-manager"
CERT_MANAGER_VERSION = "v1.21.2"

# The oldest Kubernetes the manifests support (deploy/README.md) and the newest whose
# schemas kubernetes-validate ships: a field or API version must exist in both.
KUBERNETES_MIN = "1.32"
KUBERNETES_VERSIONS = (
    KUBERNETES_MIN,
    ".".join(kubernetes_validate.latest_version().split(".")[:2]),
)

NAMESPACE = "meshmart"
TRUST_DOMAIN = "cluster.local"

CRD_GROUP_SUFFIXES = ("istio.io", "cert-manager.io")
GO_INSTALL_HINT = (
    "the deploy checks need the Go toolchain (go 1.26) to build kustomize and to fetch the "
    "Istio and cert-manager CRDs from the Go module proxy: install Go from your distribution "
    "(Debian/Ubuntu: apt-get install golang) or https://go.dev/dl/"
)

Obj = dict[str, Any]


class DeployToolError(RuntimeError):
    """A tool the deploy checks need could not be found, built or fetched."""


# --- tools --------------------------------------------------------------------------


def _go_env() -> dict[str, str]:
    # Go's own module and build caches stay where Go keeps them (~/go/pkg/mod,
    # ~/.cache/go-build), shared by every checkout on the machine as Maven's ~/.m2 is
    # for RocketMQ: a fresh clone (CI) then only links kustomize, in seconds.
    return dict(os.environ) | {"GOTOOLCHAIN": "local", "GOFLAGS": "-modcacherw"}


@contextlib.contextmanager
def _cache_lock(name: str) -> Iterator[None]:
    """Serialise builds of one tool across processes (pytest-xdist, two checkouts' CI)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise DeployToolError(GO_INSTALL_HINT)
    return go


def _run(args: list[str], *, env: Mapping[str, str] | None = None, timeout: float = 600) -> str:
    result = subprocess.run(
        args, capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise DeployToolError(
            f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr or result.stdout}"
        )
    return result.stdout


@functools.cache
def kustomize() -> Path:
    """The kustomize binary, built once into var/cache/deploy/bin."""
    binary = CACHE / "bin" / f"kustomize-{KUSTOMIZE_VERSION}"
    if binary.is_file():
        return binary
    with _cache_lock("kustomize"):
        if binary.is_file():
            return binary
        with tempfile.TemporaryDirectory(dir=CACHE) as gobin:
            env = _go_env() | {"GOBIN": gobin}
            _run([_go(), "install", f"{KUSTOMIZE_MODULE}@{KUSTOMIZE_VERSION}"], env=env)
            binary.parent.mkdir(parents=True, exist_ok=True)
            # Renamed in place only once complete: a half-built binary is never used.
            os.replace(Path(gobin) / "kustomize", binary)
    return binary


@functools.cache
def go_module(module: str, version: str) -> Path:
    """The source folder of a Go module version (``go mod download``; cached)."""
    with _cache_lock("go-mod"):
        info = json.loads(
            _run([_go(), "mod", "download", "-json", f"{module}@{version}"], env=_go_env())
        )
    if "Error" in info:
        raise DeployToolError(f"go mod download {module}@{version}: {info['Error']}")
    return Path(info["Dir"])


# --- rendering ----------------------------------------------------------------------


def load_yaml_documents(text: str) -> list[Obj]:
    """The non-empty documents of a YAML stream."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [doc for doc in yaml.load_all(text, Loader=loader) if doc]


@functools.cache
def _build(path: Path) -> tuple[Obj, ...]:
    output = _run([str(kustomize()), "build", str(path)], timeout=120)
    return tuple(load_yaml_documents(output))


def build(path: Path) -> list[Obj]:
    """``kustomize build path`` as objects (cached per path for the test session)."""
    return [json.loads(json.dumps(obj)) for obj in _build(path.resolve())]


def kustomization_dirs() -> list[Path]:
    """Every folder under deploy/ with a kustomization.yaml."""
    return sorted(p.parent for p in DEPLOY.rglob("kustomization.yaml"))


def is_component(path: Path) -> bool:
    """Whether the kustomization in ``path`` is a Component (only buildable inside another)."""
    doc = yaml.safe_load((path / "kustomization.yaml").read_text())
    return bool(doc.get("kind") == "Component")


def overlays() -> list[Path]:
    """The deployable kustomizations: base and every overlay."""
    return [K8S / "base", *sorted(p for p in (K8S / "overlays").iterdir() if p.is_dir())]


def components_of(path: Path) -> list[Path]:
    """The components a kustomization lists, as resolved folders."""
    doc = yaml.safe_load((path / "kustomization.yaml").read_text())
    return [(path / c).resolve() for c in doc.get("components", [])]


# --- Kubernetes schemas -------------------------------------------------------------


def group_of(obj: Obj) -> str:
    """The API group of an object ("" for the core group)."""
    api_version = str(obj["apiVersion"])
    return api_version.split("/")[0] if "/" in api_version else ""


def is_custom_resource(obj: Obj) -> bool:
    """Istio and cert-manager objects (validated against their CRDs)."""
    return group_of(obj).endswith(CRD_GROUP_SUFFIXES)


def _schema_dir(version: str) -> Path:
    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    folder = root / f"v{version}.0-local-strict"
    if not folder.is_dir():
        raise DeployToolError(f"kubernetes-validate has no schemas for Kubernetes {version}")
    return folder


@functools.cache
def _kubernetes_registry(version: str) -> Registry[Any]:
    definitions = json.loads((_schema_dir(version) / "_definitions.json").read_text())
    resource: Resource[Any] = Resource.from_contents(definitions)
    registry: Registry[Any] = Registry().with_resource("_definitions.json", resource)
    # Crawled once here; otherwise every $ref lookup crawls the 1.3 MB of definitions.
    return registry.crawl()


@functools.cache
def _kubernetes_validator(version: str, kind: str, api_version: str) -> jsonschema.Validator:
    # kubernetes-validate's file names: rbac.authorization.k8s.io/v1 -> rbac-v1.
    short = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = _schema_dir(version) / f"{kind.lower()}-{short}.json"
    if not path.is_file():
        raise DeployToolError(f"{kind} {api_version} does not exist in Kubernetes {version}")
    schema = json.loads(path.read_text())
    validator: jsonschema.Validator = jsonschema.Draft202012Validator(
        schema, registry=_kubernetes_registry(version)
    )
    return validator


def kubernetes_errors(obj: Obj, version: str) -> list[str]:
    """Strict schema errors of a built-in object for a Kubernetes minor version."""
    try:
        validator = _kubernetes_validator(version, obj["kind"], obj["apiVersion"])
    except DeployToolError as exc:
        return [str(exc)]
    return [_describe(error) for error in validator.iter_errors(obj)]


def _describe(error: jsonschema.ValidationError) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "(top)"
    return f"{where}: {error.message[:300]}"


# --- CRD schemas --------------------------------------------------------------------


@dataclass(frozen=True)
class CrdVersion:
    """One served version of a CRD: its JSON Schema and its CEL rules."""

    group: str
    version: str
    kind: str
    namespaced: bool
    schema: Obj


def _crd_files() -> list[Path]:
    istio = go_module(ISTIO_API_MODULE, ISTIO_API_VERSION)
    cert_manager = go_module(CERT_MANAGER_MODULE, CERT_MANAGER_VERSION)
    return [
        istio / "kubernetes" / "customresourcedefinitions.gen.yaml",
        *sorted((cert_manager / "deploy" / "crds").glob("*.yaml")),
    ]


@functools.cache
def crds() -> dict[tuple[str, str, str], CrdVersion]:
    """(group, version, kind) -> the CRD version's schema, from the published CRDs."""
    cached = CACHE / f"crds-istio-{ISTIO_API_VERSION}-cert-manager-{CERT_MANAGER_VERSION}.json"
    if cached.is_file():
        raw = json.loads(cached.read_text())
    else:
        raw = []
        for path in _crd_files():
            for doc in load_yaml_documents(path.read_text()):
                if doc.get("kind") != "CustomResourceDefinition":
                    continue
                spec = doc["spec"]
                for version in spec["versions"]:
                    if not version.get("served", False):
                        continue
                    raw.append(
                        {
                            "group": spec["group"],
                            "version": version["name"],
                            "kind": spec["names"]["kind"],
                            "namespaced": spec["scope"] == "Namespaced",
                            "schema": version["schema"]["openAPIV3Schema"],
                        }
                    )
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        tmp.write_text(json.dumps(raw))
        os.replace(tmp, cached)
    return {(r["group"], r["version"], r["kind"]): CrdVersion(**r) for r in raw}


_SCHEMA_KEYWORDS = (
    "enum",
    "required",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "format",
)


def structural_to_json_schema(node: Obj) -> Obj:
    """A CRD's structural OpenAPI v3 schema as a JSON Schema, as the API server applies it.

    Unknown fields are errors wherever the schema lists properties (strict field
    validation), unless ``x-kubernetes-preserve-unknown-fields`` keeps them;
    ``nullable`` admits null; ``x-kubernetes-int-or-string`` admits either.
    """
    out: Obj = {k: node[k] for k in _SCHEMA_KEYWORDS if k in node}
    if "type" in node:
        out["type"] = [node["type"], "null"] if node.get("nullable") else node["type"]
    if node.get("x-kubernetes-int-or-string"):
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if "properties" in node:
        out["properties"] = {k: structural_to_json_schema(v) for k, v in node["properties"].items()}
    if "items" in node:
        out["items"] = structural_to_json_schema(node["items"])
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        out["additionalProperties"] = structural_to_json_schema(extra)
    elif isinstance(extra, bool):
        out["additionalProperties"] = extra
    elif "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    for key in ("oneOf", "anyOf", "allOf"):
        if key in node:
            out.setdefault("allOf", []).append(
                {key: [structural_to_json_schema(n) for n in node[key]]}
            )
    if "not" in node:
        out["not"] = structural_to_json_schema(node["not"])
    return out


@functools.cache
def _crd_validator(group: str, version: str, kind: str) -> jsonschema.Validator:
    crd = crds()[(group, version, kind)]
    schema = structural_to_json_schema(crd.schema)
    # The API server checks metadata itself; here: a name, a valid one.
    schema.setdefault("properties", {})["metadata"] = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"}
        },
    }
    schema["additionalProperties"] = True
    return jsonschema.Draft202012Validator(schema, format_checker=None)


def crd_errors(obj: Obj) -> list[str]:
    """Schema errors of an Istio or cert-manager object against its published CRD."""
    group, _, version = str(obj["apiVersion"]).partition("/")
    if (group, version, obj["kind"]) not in crds():
        return [f"no served CRD version {obj['apiVersion']} {obj['kind']}"]
    validator = _crd_validator(group, version, obj["kind"])
    errors = [_describe(error) for error in validator.iter_errors(obj)]
    errors += [f"{path}: {message}" for path, message in cel_errors(obj)]
    return errors


# --- CEL rules (x-kubernetes-validations) -------------------------------------------


# The API server runs these rules on every object it admits; cel-python runs them here.
# It knows standard CEL; the few Kubernetes extensions the CRDs use are added below
# (``url()``, ``getScheme()``, ``isURL()`` and the strings library's ``substring()``).
class _Url(celtypes.StringType):
    """What Kubernetes' ``url()`` returns: a parsed URL (kept as its text)."""


def _url(value: celtypes.StringType) -> _Url:
    return _Url(str(value))


def _get_scheme(value: celtypes.StringType) -> celtypes.StringType:
    return celtypes.StringType(urlsplit(str(value)).scheme)


def _is_url(value: celtypes.StringType) -> celtypes.BoolType:
    parts = urlsplit(str(value))
    return celtypes.BoolType(bool(parts.scheme) and (bool(parts.netloc) or bool(parts.path)))


def _substring(
    value: celtypes.StringType, start: celtypes.IntType, end: celtypes.IntType | None = None
) -> celtypes.StringType:
    text = str(value)
    if end is None:
        return celtypes.StringType(text[int(start) :])
    if not 0 <= int(start) <= int(end) <= len(text):
        raise ValueError(f"substring({start}, {end}) out of range for {len(text)} characters")
    return celtypes.StringType(text[int(start) : int(end)])


_FUNCTIONS: dict[str, Any] = {
    "url": _url,
    "getScheme": _get_scheme,
    "isURL": _is_url,
    "substring": _substring,
}

_ENVIRONMENT = celpy.Environment()


@functools.cache
def _program(rule: str) -> celpy.Runner:
    return _ENVIRONMENT.program(_ENVIRONMENT.compile(rule), functions=_FUNCTIONS)


def evaluate_rule(rule: str, value: Any) -> bool:
    """Whether ``value`` (the JSON at the rule's place in the object) satisfies ``rule``."""
    result = _program(rule).evaluate({"self": json_to_cel(value)})
    if isinstance(result, Exception):
        raise result
    if not isinstance(result, celtypes.BoolType):
        raise TypeError(f"CEL rule {rule!r} gave {result!r}, not a boolean")
    return bool(result)


def cel_rules(schema: Obj, path: str = "") -> Iterator[tuple[str, Obj, Obj]]:
    """(JSON path, schema node, rule) for every x-kubernetes-validations rule of a schema."""
    for rule in schema.get("x-kubernetes-validations", []):
        yield path, schema, rule
    for name, child in schema.get("properties", {}).items():
        yield from cel_rules(child, f"{path}/{name}")
    if "items" in schema:
        yield from cel_rules(schema["items"], f"{path}/[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from cel_rules(schema["additionalProperties"], f"{path}/{{}}")


def values_at(obj: Any, path: str) -> Iterator[tuple[str, Any]]:
    """The values a schema path (``/spec/http/[]/retries``) selects in an object."""
    parts = [p for p in path.split("/") if p]

    def walk(value: Any, rest: list[str], where: str) -> Iterator[tuple[str, Any]]:
        if not rest:
            yield where or "/", value
            return
        head, tail = rest[0], rest[1:]
        if head == "[]" and isinstance(value, list):
            for i, item in enumerate(value):
                yield from walk(item, tail, f"{where}/{i}")
        elif head == "{}" and isinstance(value, dict):
            for key, item in value.items():
                yield from walk(item, tail, f"{where}/{key}")
        elif isinstance(value, dict) and head in value:
            yield from walk(value[head], tail, f"{where}/{head}")

    yield from walk(obj, parts, "")


def cel_errors(obj: Obj) -> list[tuple[str, str]]:
    """The CEL rules of the object's CRD that it breaks: (path, message)."""
    group, _, version = str(obj["apiVersion"]).partition("/")
    crd = crds()[(group, version, obj["kind"])]
    failures = []
    for path, _node, rule in cel_rules(crd.schema):
        for where, value in values_at(obj, path):
            if not evaluate_rule(rule["rule"], value):
                failures.append((where, str(rule.get("message", rule["rule"]))))
    return failures


# --- rendered manifests -------------------------------------------------------------


@dataclass
class Manifests:
    """The objects of one render, with the look-ups the cross-reference checks need."""

    objects: list[Obj]

    def of_kind(self, *kinds: str) -> list[Obj]:
        """Objects of these kinds."""
        return [o for o in self.objects if o["kind"] in kinds]

    def named(self, kind: str, name: str) -> Obj | None:
        """The object of this kind and name, if any."""
        return next((o for o in self.of_kind(kind) if o["metadata"]["name"] == name), None)

    def names(self, kind: str) -> set[str]:
        """Names of the objects of a kind."""
        return {o["metadata"]["name"] for o in self.of_kind(kind)}

    def workloads(self) -> list[Obj]:
        """Deployments, StatefulSets and Jobs (everything with a pod template)."""
        return self.of_kind("Deployment", "StatefulSet", "Job", "DaemonSet")

    def pod_templates(self) -> list[tuple[Obj, Obj]]:
        """(workload, pod template) of every workload."""
        return [(w, w["spec"]["template"]) for w in self.workloads()]

    def pod_labels(self) -> list[dict[str, str]]:
        """The labels of every pod the render would run."""
        return [dict(t["metadata"].get("labels", {})) for _, t in self.pod_templates()]

    def selects_pods(self, selector: Mapping[str, str]) -> bool:
        """Whether a label selector (matchLabels) picks at least one pod."""
        return any(
            all(labels.get(k) == v for k, v in selector.items()) for labels in self.pod_labels()
        )

    def service_hosts(self) -> dict[str, Obj]:
        """FQDN -> Service."""
        return {service_host(s): s for s in self.of_kind("Service")}

    def service_entry_hosts(self) -> set[str]:
        """Hosts of the ServiceEntries."""
        return {h for se in self.of_kind("ServiceEntry") for h in se["spec"]["hosts"]}


def service_host(service: Obj) -> str:
    """A Service's cluster DNS name."""
    meta = service["metadata"]
    return f"{meta['name']}.{meta.get('namespace', NAMESPACE)}.svc.cluster.local"


@functools.cache
def _render(path: Path) -> Manifests:
    return Manifests(build(path))


def render(path: Path) -> Manifests:
    """The render of a kustomization folder (cached for the test session)."""
    return _render(path.resolve())


# --- the code's side: settings, routes, calls ---------------------------------------


def settings_class(service: str) -> type[Any]:
    """The service's Settings class (``<service>_service.settings.Settings``)."""
    module = importlib.import_module(f"{service}_service.settings")
    cls: type[Any] = module.Settings
    return cls


def settings_env_names(service: str) -> dict[str, bool]:
    """Env name -> whether the service cannot start without it, for every setting it reads.

    pydantic-settings reads each field from its upper-case name (and from its
    validation aliases, e.g. CONSUL_HTTP_TOKEN).
    """
    names: dict[str, bool] = {}
    for name, field in settings_class(service).model_fields.items():
        aliases = [name]
        alias = field.validation_alias
        if isinstance(alias, str):
            aliases = [alias]
        elif alias is not None and hasattr(alias, "choices"):
            aliases = [c for c in alias.choices if isinstance(c, str)]
        for env in aliases:
            names[env.upper()] = field.is_required()
    return names


@dataclass(frozen=True)
class Route:
    """One operation of a service's HTTP API."""

    service: str
    method: str
    path: str  # the template, e.g. /api/v1/products/{product_id}
    admin: bool  # only an admin may call it

    def sample_path(self) -> str:
        """The path with every parameter filled in."""
        return re.sub(r"\{[^}]+\}", "7", self.path)


_ADMIN_DOC = re.compile(r"\(admins?(\)|;| only)")


def _depends_on(dependant: Any, function_name: str) -> bool:
    call = getattr(dependant, "call", None)
    if getattr(call, "__name__", None) == function_name:
        return True
    return any(_depends_on(d, function_name) for d in getattr(dependant, "dependencies", []))


@functools.cache
def service_routes(service: str) -> tuple[Route, ...]:
    """Every operation of the service's app, and whether it is for admins only.

    Admin-only: the route depends on ``AdminUser`` (meshmart_common.auth.admin_principal),
    or its docstring (the OpenAPI text) says "(admin)", as order's ship and complete do,
    whose domain checks the role.
    """
    from fastapi import routing

    main = importlib.import_module(f"{service}_service.main")
    with tempfile.TemporaryDirectory() as var_dir:
        app = main.build_app(settings_class(service)(var_dir=var_dir, _env_file=None))
    # Newer FastAPI keeps included routers whole; iter_route_contexts knows the full paths.
    contexts = getattr(routing, "iter_route_contexts", None)
    if contexts is not None:
        pairs = [(c.original_route, c.path) for c in contexts(app.routes)]
    else:  # pragma: no cover - older FastAPI
        pairs = [(r, getattr(r, "path_format", None)) for r in app.routes]
    routes = []
    for route, path in pairs:
        if not isinstance(route, routing.APIRoute) or not isinstance(path, str):
            continue
        doc = (route.description or "") + " " + (route.summary or "")
        admin = _depends_on(route.dependant, "admin_principal") or bool(_ADMIN_DOC.search(doc))
        for method in sorted(route.methods or ()):
            routes.append(Route(service, method, path, admin))
    return tuple(routes)


@dataclass(frozen=True)
class Call:
    """A request one service makes to another."""

    caller: str
    callee: str
    method: str
    path: str  # a sample path (parameters filled in)
    where: str  # file:line, or the setting


_HTTP_METHODS = {"get", "post", "put", "patch", "delete"}


def _literal_path(node: ast.expr, constants: Mapping[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                parts.append(value.value)
            else:
                parts.append("7")
        return "".join(parts)
    return None


def _route_owner(method: str, path: str) -> list[Route]:
    return [
        r
        for service in SERVICES
        for r in service_routes(service)
        if r.method == method and re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", r.path), path)
    ]


@functools.cache
def code_calls() -> tuple[Call, ...]:
    """The service-to-service calls in the code.

    - every ServiceClient request (``client.get/post/...("/api/...")``) in the modules
      of a service that use meshmart_common.service_client, attributed to the service
      whose API has that method and path;
    - every service's token verifier fetching the JWKS at JWKS_URL, unless the service
      gives create_app its own keys (user does).
    """
    calls: list[Call] = []
    for service in SERVICES:
        src = REPO_ROOT / "services" / service / "src"
        for file in sorted(src.rglob("*.py")):
            text = file.read_text()
            if "service_client" not in text:
                continue
            tree = ast.parse(text)
            constants = {
                t.id: n.value.value
                for n in tree.body
                if isinstance(n, ast.Assign)
                and isinstance(n.value, ast.Constant)
                and isinstance(n.value.value, str)
                for t in n.targets
                if isinstance(t, ast.Name)
            }
            for node in ast.walk(tree):
                if not (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in _HTTP_METHODS
                    and node.args
                ):
                    continue
                path = _literal_path(node.args[0], constants)
                if path is None or not path.startswith("/api/"):
                    continue
                method = node.func.attr.upper()
                where = f"{file.relative_to(REPO_ROOT)}:{node.lineno}"
                owners = {r.service for r in _route_owner(method, path)}
                if len(owners) != 1:
                    raise AssertionError(f"{where}: {method} {path} is served by {owners or 'no'}")
                calls.append(Call(service, owners.pop(), method, path, where))
        if _fetches_jwks(service):
            calls.append(Call(service, "user", "GET", "/.well-known/jwks.json", "setting JWKS_URL"))
    return tuple(calls)


def _fetches_jwks(service: str) -> bool:
    """create_app verifies tokens against JWKS_URL unless the service hands it its own keys."""
    main = REPO_ROOT / "services" / service / "src" / f"{service}_service" / "main.py"
    for node in ast.walk(ast.parse(main.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "create_app":
            return not any(k.arg == "key_source" for k in node.keywords)
    raise AssertionError(f"{main} does not call create_app")


# --- Istio semantics ----------------------------------------------------------------


def spiffe(service_account: str, namespace: str = NAMESPACE) -> str:
    """The mesh identity of a ServiceAccount."""
    return f"{TRUST_DOMAIN}/ns/{namespace}/sa/{service_account}"


def _istio_string_match(pattern: str, value: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    return pattern == value


def istio_path_match(pattern: str, path: str) -> bool:
    """An AuthorizationPolicy path: exact, ``prefix*``, ``*suffix``, ``{*}`` or ``{**}``."""
    if "{*}" in pattern or "{**}" in pattern:
        regex = ""
        for part in re.split(r"(\{\*\*\}|\{\*\})", pattern):
            if part == "{*}":
                regex += "[^/]+"
            elif part == "{**}":
                regex += ".+"
            else:
                regex += re.escape(part)
        return re.fullmatch(regex, path) is not None
    return _istio_string_match(pattern, path)


@dataclass(frozen=True)
class Request:
    """What an AuthorizationPolicy sees of a request."""

    principal: str | None
    namespace: str | None
    method: str
    path: str
    port: int
    claims: Mapping[str, str]


def _rule_matches(rule: Obj, request: Request) -> bool:
    sources = [f["source"] for f in rule.get("from", [])]
    if sources and not any(_source_matches(s, request) for s in sources):
        return False
    operations = [t["operation"] for t in rule.get("to", [])]
    if operations and not any(_operation_matches(o, request) for o in operations):
        return False
    for condition in rule.get("when", []):
        match = re.fullmatch(r"request\.auth\.claims\[(\w+)\]", condition["key"])
        if match is None:
            raise AssertionError(f"condition key {condition['key']} is not modelled here")
        if request.claims.get(match.group(1)) not in condition.get("values", []):
            return False
    return True


def _source_matches(source: Obj, request: Request) -> bool:
    if "principals" in source and not any(
        request.principal is not None and _istio_string_match(p, request.principal)
        for p in source["principals"]
    ):
        return False
    if "namespaces" in source and request.namespace not in source["namespaces"]:
        return False
    unknown = set(source) - {"principals", "namespaces"}
    if unknown:
        raise AssertionError(f"source fields {unknown} are not modelled here")
    return True


def _operation_matches(operation: Obj, request: Request) -> bool:
    if "methods" in operation and request.method not in operation["methods"]:
        return False
    if "paths" in operation and not any(
        istio_path_match(p, request.path) for p in operation["paths"]
    ):
        return False
    if any(istio_path_match(p, request.path) for p in operation.get("notPaths", [])):
        return False
    if "ports" in operation and str(request.port) not in operation["ports"]:
        return False
    unknown = set(operation) - {"methods", "paths", "notPaths", "ports"}
    if unknown:
        raise AssertionError(f"operation fields {unknown} are not modelled here")
    return True


def authorization_allows(
    manifests: Manifests, pod_labels: Mapping[str, str], request: Request
) -> bool:
    """Whether the namespace's AuthorizationPolicies let ``request`` reach a pod.

    Istio's order: a matching DENY wins; without any ALLOW policy for the pod the
    request passes; otherwise it must match an ALLOW rule (an ALLOW policy without
    rules, ``spec: {}``, matches nothing).
    """
    applicable = []
    for policy in manifests.of_kind("AuthorizationPolicy"):
        spec = policy.get("spec") or {}
        selector = spec.get("selector", {}).get("matchLabels", {})
        if all(pod_labels.get(k) == v for k, v in selector.items()):
            applicable.append(spec)
    for spec in applicable:
        if spec.get("action") == "DENY" and any(
            _rule_matches(r, request) for r in spec.get("rules", [])
        ):
            return False
    allows = [s for s in applicable if s.get("action", "ALLOW") == "ALLOW"]
    if not allows:
        return True
    return any(_rule_matches(r, request) for s in allows for r in s.get("rules", []))


def ingress_destination(virtual_service: Obj, method: str, path: str) -> Obj | None:
    """The first http route of a VirtualService that takes a request without headers."""
    for route in virtual_service["spec"].get("http", []):
        for match in route.get("match", [{}]):
            if "headers" in match:
                continue
            uri = match.get("uri", {})
            if "prefix" in uri and not path.startswith(uri["prefix"]):
                continue
            if "exact" in uri and path != uri["exact"]:
                continue
            if "method" in match and match["method"].get("exact") != method:
                continue
            route_obj: Obj = route
            return route_obj
    return None
