"""docker-compose.yml, checked without a Docker engine.

The file must be valid Compose, build every service image from files that
exist, mount only files that exist, give every service the settings it
reads, publish host ports that do not collide, start things in the right
order (migrations once, before the replicas), and agree with the MySQL init
script, the gateway and Prometheus on names, accounts and addresses.
"""

from __future__ import annotations

import copy
import ipaddress
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from pydantic import ValidationError
from pydantic_settings import BaseSettings
from sqlalchemy.engine import make_url

from data_service.settings import Settings as DataSettings
from order_service.settings import Settings as OrderSettings
from product_service.settings import Settings as ProductSettings
from tests.deploy.compose_file import (
    COMPOSE_FILE,
    REPLICAS_FILE,
    ROOT,
    SERVICES,
    UnsetVariable,
    compose_schema,
    environment,
    interpolate,
    load,
    services,
    variables,
)
from trade_service.settings import Settings as TradeSettings
from user_service.settings import Settings as UserSettings

SETTINGS: dict[str, type[BaseSettings]] = {
    "user": UserSettings,
    "product": ProductSettings,
    "order": OrderSettings,
    "trade": TradeSettings,
    "data": DataSettings,
}
# Read by libraries rather than by the settings classes: the OpenTelemetry
# SDK's standard variables, and the log format (its setting is being added).
READ_OUTSIDE_SETTINGS = re.compile(r"^(OTEL_[A-Z_]+|LOG_FORMAT)$")
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
MYSQL_INIT = ROOT / "deploy" / "compose" / "mysql" / "initdb" / "10-meshmart-databases.sql"
PROMETHEUS_CONFIG = ROOT / "deploy" / "compose" / "prometheus" / "prometheus.yml"
SEEDED = ("user", "product", "trade")
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - what the settings and ports say, not a bind here


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """docker-compose.yml as compose sees it with an empty environment (defaults applied)."""
    document: dict[str, Any] = interpolate(load())
    return document


@pytest.fixture(scope="module")
def replicas() -> dict[str, Any]:
    """docker-compose.replicas.yml, interpolated."""
    document: dict[str, Any] = interpolate(load(REPLICAS_FILE))
    return document


def merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` on top, the way compose merges -f files (mappings
    merge key by key, sequences such as ports are appended)."""
    result = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merged(result[key], value)
        elif isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = [*result[key], *value]
        else:
            result[key] = copy.deepcopy(value)
    return result


def is_one_shot(service: Mapping[str, Any]) -> bool:
    """A container that runs to completion (migrate, seed, key and topic set-up)."""
    return service.get("restart") == "no"


def builds_our_image(service: Mapping[str, Any]) -> bool:
    return "build" in service


# --- the file itself ---------------------------------------------------------------


def test_compose_files_match_the_compose_specification(
    compose: dict[str, Any], replicas: dict[str, Any]
) -> None:
    validator = jsonschema.Draft202012Validator(compose_schema())
    for name, document in (("docker-compose.yml", compose), ("replicas", replicas)):
        errors = [
            f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(document)
        ]
        assert errors == [], f"{name}:\n" + "\n".join(errors)
    # The schema does reject a broken file (a check that cannot fail proves nothing).
    broken = copy.deepcopy(compose)
    services(broken)["user"]["depends_on"]["mysql"]["condition"] = "service_ready"
    services(broken)["gateway"]["healtcheck"] = {}
    assert len(list(validator.iter_errors(broken))) >= 2


def test_every_variable_the_compose_file_reads_has_a_default() -> None:
    document = load()
    assert variables(document) >= {"MESHMART_BIND_ADDRESS", "MESHMART_ENVIRONMENT"}
    interpolate(document, {})  # raises UnsetVariable for a ${VAR} without a default
    with pytest.raises(UnsetVariable):
        interpolate({"x": "${NOT_SET_ANYWHERE}"}, {})


def test_every_image_is_pinned_to_a_version(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        image = service.get("image", "")
        assert image, f"{name} names no image"
        repository, _, tag = image.rpartition(":")
        assert repository, f"{name}: {image} has no tag"
        assert "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image}"


def test_every_service_image_is_built_from_an_existing_dockerfile_for_its_own_package(
    compose: dict[str, Any],
) -> None:
    built: dict[str, set[str]] = {}
    for name, service in services(compose).items():
        if not builds_our_image(service):
            continue
        build = service["build"]
        context = ROOT / build["context"]
        dockerfile = context / build["dockerfile"]
        assert context.resolve() == ROOT, f"{name}: the build context must be the workspace root"
        assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"
        package = build["args"]["SERVICE"]
        pyproject = ROOT / "services" / package / "pyproject.toml"
        assert pyproject.is_file(), f"{name}: no workspace package services/{package}"
        assert f'name = "meshmart-{package}"' in pyproject.read_text()
        assert service["image"].split(":")[0] == f"meshmart/{package}", name
        assert name == package or name.startswith(f"{package}-"), (name, package)
        built.setdefault(package, set()).add(name)
    assert set(built) == set(SERVICES)
    # One tag, one build: every container of a service runs the same image.
    for package, names in built.items():
        images = {services(compose)[n]["image"] for n in names}
        builds = {repr(services(compose)[n]["build"]) for n in names}
        assert len(images) == len(builds) == 1, (package, images, builds)


def _bind_sources(service: Mapping[str, Any]) -> Iterator[str]:
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/", "~")):
                yield source
        elif volume.get("type") == "bind":
            yield volume["source"]


def test_every_mounted_file_exists(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes", {}))
    mounted = 0
    for name, service in services(compose).items():
        for source in _bind_sources(service):
            path = (ROOT / source).resolve()
            assert path.exists(), f"{name} mounts {source}, which does not exist"
            assert ROOT in path.parents, f"{name} mounts {source}, outside the repository"
            mounted += 1
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source")
            if source and not source.startswith((".", "/", "~")):
                assert source in declared, f"{name} uses the undeclared volume {source}"
    # The MySQL init, two RocketMQ configs, the topic script, the gateway's two, Prometheus's.
    assert mounted >= 7


def _host_ports(document: Mapping[str, Any]) -> Iterator[tuple[str, str, int, str]]:
    for name, service in services(document).items():
        for port in service.get("ports", []):
            if isinstance(port, str):
                *host, container = port.split(":")
                protocol = container.split("/")[1] if "/" in container else "tcp"
                address = host[0] if len(host) == 2 else ALL_INTERFACES
                published = host[-1] if host else ""
            else:
                address = port.get("host_ip", ALL_INTERFACES)
                published = str(port.get("published", ""))
                protocol = port.get("protocol", "tcp")
            assert published, f"{name}: {port} leaves the host port to chance"
            yield name, address, int(published), protocol


def test_host_ports_do_not_collide_and_stay_on_loopback_by_default(
    compose: dict[str, Any], replicas: dict[str, Any]
) -> None:
    for document in (compose, merged(compose, replicas)):
        seen: dict[tuple[int, str], str] = {}
        for name, address, port, protocol in _host_ports(document):
            assert address == "127.0.0.1", f"{name} publishes {port} on {address}"
            assert (port, protocol) not in seen, f"{name} and {seen[(port, protocol)]}: {port}"
            seen[(port, protocol)] = name
        assert seen == {
            (8080, "tcp"): "gateway",
            (8500, "tcp"): "consul",
            (16686, "tcp"): "jaeger",
            (9090, "tcp"): "prometheus",
        }
    exposed = interpolate(load(), {"MESHMART_BIND_ADDRESS": ALL_INTERFACES})
    assert {address for _, address, _, _ in _host_ports(exposed)} == {ALL_INTERFACES}


# --- settings --------------------------------------------------------------------------


def _env_names(settings_class: type[BaseSettings]) -> set[str]:
    """The environment variables a settings class reads (field names and aliases)."""
    names: set[str] = set()
    for field_name, field in settings_class.model_fields.items():
        names.add(field_name.upper())
        alias = field.validation_alias
        choices = getattr(alias, "choices", [alias] if isinstance(alias, str) else [])
        names |= {str(choice).upper() for choice in choices}
    return names


def _containers_of(compose: Mapping[str, Any], service: str) -> dict[str, dict[str, Any]]:
    """The service and its one-shot containers that run its code with its settings."""
    return {
        name: spec
        for name, spec in services(compose).items()
        if builds_our_image(spec) and spec["build"]["args"]["SERVICE"] == service
    }


@pytest.mark.parametrize("service", SERVICES)
def test_every_setting_a_service_reads_is_set_or_has_a_default(
    compose: dict[str, Any], service: str
) -> None:
    settings_class = SETTINGS[service]
    readable = _env_names(settings_class)
    required = {n.upper() for n, f in settings_class.model_fields.items() if f.is_required()}
    for name, container in _containers_of(compose, service).items():
        if "entrypoint" in container:
            continue  # user-keygen runs a one-liner, not the service
        env = environment(container)
        assert required <= set(env), f"{name} lacks {sorted(required - set(env))}"
        unknown = {k for k in env if k not in readable and not READ_OUTSIDE_SETTINGS.match(k)}
        assert not unknown, f"{name} sets {sorted(unknown)}, which no setting of {service} reads"
        assert env["OTEL_SERVICE_NAME"] == service


def _settings_from(
    settings_class: type[BaseSettings], env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch
) -> BaseSettings:
    """``settings_class`` built from exactly ``env``, as in the container."""
    for name in _env_names(settings_class):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return settings_class(_env_file=None)


@pytest.mark.parametrize(
    "shell_env",
    [{}, {"MESHMART_ENVIRONMENT": "production", "ADMIN_PASSWORD": "a-secret-of-your-own"}],
    ids=["development", "production"],
)
def test_every_service_accepts_its_compose_settings(
    shell_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    compose = interpolate(load(), shell_env)
    for service, settings_class in SETTINGS.items():
        for container in _containers_of(compose, service).values():
            if "entrypoint" in container:
                continue
            settings = _settings_from(settings_class, environment(container), monkeypatch)
            values = settings.model_dump()
            assert values["service_name"] == service
            assert values["port"] == 8000
            assert values["host"] == ALL_INTERFACES
            assert values["bus_backend"] == "rocketmq"
            assert values["discovery_backend"] == "consul"
            assert values["advertise_address"] == ""
            assert str(values["environment"]) == shell_env.get(
                "MESHMART_ENVIRONMENT", "development"
            )


def test_production_refuses_the_development_admin_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compose = interpolate(load(), {"MESHMART_ENVIRONMENT": "production"})
    with pytest.raises(ValidationError, match="ADMIN_PASSWORD"):
        _settings_from(UserSettings, environment(services(compose)["user"]), monkeypatch)


# --- order of start-up ---------------------------------------------------------------


def _healthchecked(compose: Mapping[str, Any], name: str) -> bool:
    service = services(compose)[name]
    check = service.get("healthcheck")
    if check is not None:
        return not check.get("disable", False)
    return builds_our_image(service) and "HEALTHCHECK" in DOCKERFILE.read_text()


def test_dependencies_wait_for_health_or_completion(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        for target, rule in service.get("depends_on", {}).items():
            assert target in services(compose), f"{name} depends on the unknown {target}"
            condition = rule["condition"]
            if condition == "service_healthy":
                assert _healthchecked(compose, target), f"{name} waits for {target}'s health"
            elif condition == "service_completed_successfully":
                assert is_one_shot(services(compose)[target]), f"{target} never completes"
            else:
                assert condition == "service_started", (name, target, condition)
                assert target == "jaeger", f"{name} should wait for {target}'s health"


def test_start_up_order_has_no_cycle(compose: dict[str, Any]) -> None:
    graph = {name: set(spec.get("depends_on", {})) for name, spec in services(compose).items()}
    order: list[str] = []
    while graph:
        ready = sorted(name for name, needs in graph.items() if not needs - set(order))
        assert ready, f"a dependency cycle among {sorted(graph)}"
        order += ready
        for name in ready:
            del graph[name]
    assert order.index("rocketmq-init") < order.index("order") < order.index("gateway")


@pytest.mark.parametrize("service", SERVICES)
def test_migrations_run_once_in_their_own_container_before_the_service(
    compose: dict[str, Any], service: str
) -> None:
    specs = services(compose)
    main, migrate = specs[service], specs[f"{service}-migrate"]
    assert "command" not in main  # the image's `serve`
    assert "entrypoint" not in main
    assert migrate["command"] == ["migrate"]
    assert is_one_shot(migrate)
    assert main["depends_on"][f"{service}-migrate"]["condition"] == (
        "service_completed_successfully"
    )
    assert migrate["depends_on"] == {"mysql": {"condition": "service_healthy"}}
    assert environment(migrate) == environment(main)
    for dependency in ("mysql", "rocketmq-proxy", "consul"):
        assert main["depends_on"][dependency]["condition"] == "service_healthy"
    assert main["depends_on"]["rocketmq-init"]["condition"] == "service_completed_successfully"
    if service in SEEDED:
        seed = specs[f"{service}-seed"]
        assert seed["command"] == ["seed"]
        assert is_one_shot(seed)
        assert seed["depends_on"] == {
            f"{service}-migrate": {"condition": "service_completed_successfully"}
        }
    else:
        assert f"{service}-seed" not in specs


def test_containers_run_hardened(compose: dict[str, Any]) -> None:
    for name, service in services(compose).items():
        if builds_our_image(service) or name == "gateway":
            assert service["read_only"] is True, name
            assert service["cap_drop"] == ["ALL"], name
            assert "no-new-privileges:true" in service["security_opt"], name
            assert "user" not in service, f"{name}: the image's non-root user, not root"


# --- agreement with the other files ----------------------------------------------------


def _init_accounts() -> dict[str, tuple[str, str]]:
    """{user: (password, database)} as the MySQL init script creates them."""
    sql = MYSQL_INIT.read_text()
    passwords = dict(
        re.findall(r"CREATE USER IF NOT EXISTS '(\w+)'@'%' IDENTIFIED BY '([^']+)'", sql)
    )
    grants = dict(
        (user, database) for database, user in re.findall(r"ON `(\w+)`\.\* TO '(\w+)'@'%'", sql)
    )
    assert set(passwords) == set(grants)
    return {user: (passwords[user], grants[user]) for user in passwords}


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_its_own_database_account_from_the_init_script(
    compose: dict[str, Any], service: str
) -> None:
    url = make_url(environment(services(compose)[service])["DATABASE_URL"])
    assert url.drivername == "mysql+aiomysql"
    assert (url.host, url.port) == ("mysql", 3306)
    assert url.username == url.database == f"meshmart_{service}"
    assert _init_accounts()[url.username] == (url.password, url.database)
    mysql = services(compose)["mysql"]
    init_mount = f"./{MYSQL_INIT.parent.relative_to(ROOT)}:/docker-entrypoint-initdb.d:ro"
    assert init_mount in mysql["volumes"]


def test_services_trust_forwarded_headers_from_the_gateway_only(compose: dict[str, Any]) -> None:
    network = compose["networks"]["meshmart"]["ipam"]["config"][0]
    subnet = ipaddress.ip_network(network["subnet"])
    dynamic = ipaddress.ip_network(network["ip_range"])
    gateway_ip = ipaddress.ip_address(
        services(compose)["gateway"]["networks"]["meshmart"]["ipv4_address"]
    )
    assert gateway_ip in subnet
    assert gateway_ip not in dynamic
    assert all(address in subnet for address in (dynamic[0], dynamic[-1]))
    for service in SERVICES:
        trusted = environment(services(compose)[service])["FORWARDED_ALLOW_IPS"]
        assert trusted == str(gateway_ip), service
    moved = interpolate(load(), {"MESHMART_NETWORK": "10.77.0"})
    assert services(moved)["gateway"]["networks"]["meshmart"]["ipv4_address"] == "10.77.0.10"
    assert environment(services(moved)["order"])["FORWARDED_ALLOW_IPS"] == "10.77.0.10"


def test_prometheus_discovers_every_service_through_the_compose_consul(
    compose: dict[str, Any],
) -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "meshmart"]
    (discovery,) = job["consul_sd_configs"]
    assert discovery["server"] == "consul:8500"
    assert "-client=0.0.0.0" in services(compose)["consul"]["command"]
    assert sorted(discovery["services"]) == sorted(SERVICES)
    assert job["metrics_path"] == "/metrics"
    env = environment(services(compose)["order"])
    assert env["CONSUL_HTTP_ADDR"] == f"http://{discovery['server']}"


def test_services_reach_each_other_by_compose_names(compose: dict[str, Any]) -> None:
    names = set(services(compose))
    for service in SERVICES:
        env = environment(services(compose)[service])
        for key in ("JWKS_URL", "OTEL_EXPORTER_OTLP_ENDPOINT", "CONSUL_HTTP_ADDR"):
            assert urlsplit(env[key]).hostname in names, (service, key, env[key])
        assert env["ROCKETMQ_ENDPOINTS"].split(":")[0] in names
        assert env["JWKS_URL"] == "http://user:8000/.well-known/jwks.json"
    order = environment(services(compose)["order"])
    assert (order["PRODUCT_URL"], order["TRADE_URL"]) == (
        "http://product:8000",
        "http://trade:8000",
    )


def test_the_replicas_override_scales_product_and_nothing_else(
    compose: dict[str, Any], replicas: dict[str, Any]
) -> None:
    assert replicas == {"services": {"product": {"deploy": {"replicas": 2}}}}
    product = merged(compose, replicas)["services"]["product"]
    # Replicas need distinct names and addresses: no fixed name, host port or address.
    for fixed in ("container_name", "hostname", "ports"):
        assert fixed not in product, fixed
    assert product["networks"] == ["meshmart"]
    env = environment(product)
    assert (env["HOST"], env["ADVERTISE_ADDRESS"], env["DISCOVERY_BACKEND"]) == (
        ALL_INTERFACES,
        "",
        "consul",
    )
    assert services(compose)["product-migrate"].get("deploy") is None


def test_the_files_named_in_comments_and_docs_exist() -> None:
    text = COMPOSE_FILE.read_text() + REPLICAS_FILE.read_text()
    named = set(re.findall(r"(deploy/[\w./-]+\.(?:sh|sql|conf|json|yml|txt))", text))
    assert named
    for relative in named:
        assert (ROOT / relative).is_file(), relative


def test_the_jwt_key_is_generated_once_into_a_volume_only_user_reads(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    keygen, user = services(compose)["user-keygen"], services(compose)["user"]
    key_file = environment(user)["JWT_PRIVATE_KEY_FILE"]
    key_dir = key_file.rsplit("/", 1)[0]
    assert keygen["entrypoint"][-1] == key_file
    assert keygen["volumes"] == [f"jwt-keys:{key_dir}"]
    assert user["volumes"] == [f"jwt-keys:{key_dir}:ro"]
    readers = [n for n, s in services(compose).items() if "jwt-keys" in str(s.get("volumes"))]
    assert sorted(readers) == ["user", "user-keygen"]
    # The one-liner itself, run here: it creates a private key once and keeps it.
    command = [sys.executable, *keygen["entrypoint"][1:-1], str(tmp_path / "keys" / "key.pem")]
    for _ in range(2):
        made = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert made.returncode == 0, made.stderr
    key = tmp_path / "keys" / "key.pem"
    assert key.stat().st_mode & 0o777 == 0o600
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert len(list(key.parent.iterdir())) == 1


def test_fixed_addresses_are_outside_the_range_docker_hands_out(compose: dict[str, Any]) -> None:
    network = compose["networks"]["meshmart"]["ipam"]["config"][0]
    subnet = ipaddress.ip_network(network["subnet"])
    dynamic = ipaddress.ip_network(network["ip_range"])
    fixed = {
        name: ipaddress.ip_address(spec["networks"]["meshmart"]["ipv4_address"])
        for name, spec in services(compose).items()
        if isinstance(spec.get("networks"), dict)
    }
    assert set(fixed) == {"gateway", "consul"}
    assert len(set(fixed.values())) == len(fixed)
    for name, address in fixed.items():
        assert address in subnet, name
        assert address not in dynamic, name
        assert address != subnet.network_address + 1, f"{name} takes the bridge's address"


def test_the_loadgenerator_is_off_by_default_and_runs_the_repository_locustfile(
    compose: dict[str, Any],
) -> None:
    loadgenerator = compose["services"]["loadgenerator"]
    assert loadgenerator["profiles"] == ["load"]
    assert "./loadgen:/mnt/loadgen:ro" in loadgenerator["volumes"]
    command = loadgenerator["command"]
    assert command[command.index("-f") + 1] == "/mnt/loadgen/locustfile.py"
    assert "--headless" in command
    assert loadgenerator["environment"]["MESHMART_GATEWAY"] == "http://gateway:8080"
    assert loadgenerator["depends_on"] == {"gateway": {"condition": "service_healthy"}}
    # The image's Locust is the one `make load` and the smoke test run the file with.
    lock = (ROOT / "uv.lock").read_text()
    locked = re.search(r'name = "locust"\nversion = "([^"]+)"', lock)
    assert locked is not None
    assert loadgenerator["image"] == f"locustio/locust:{locked.group(1)}"
    for name in ("gateway", *SERVICES):
        assert "profiles" not in compose["services"][name]
