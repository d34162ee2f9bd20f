"""docker-compose.yml as data, for the checks that need no Docker engine.

Compose itself is not available in the tests, so this module does the parts
of its job the checks rely on: it reads the YAML (anchors and merge keys
included), interpolates ``${VAR:-default}`` the way compose does, and fetches
the Compose Specification's JSON schema that compose-go (the library inside
``docker compose``) validates files against.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
REPLICAS_FILE = ROOT / "docker-compose.replicas.yml"
SERVICES = ("user", "product", "order", "trade", "data")

# compose-go, the library `docker compose` is built on, ships the schema it
# validates against; its Go module is the schema's most faithful source.
SCHEMA_MODULE = "github.com/compose-spec/compose-go/v2"
SCHEMA_VERSION = "v2.16.2"
SCHEMA_CACHE = ROOT / "var" / "cache" / "compose-spec" / f"compose-spec-{SCHEMA_VERSION}.json"

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, $NAME, $$
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class UnsetVariable(KeyError):
    """The compose file reads a variable that has no value and no default."""


def load(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The compose file as plain data, before interpolation."""
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict), f"{path} is not a YAML mapping"
    return document


def variables(document: Any) -> set[str]:
    """Every variable name the document reads (``$$`` escapes excluded)."""
    found: set[str] = set()
    if isinstance(document, str):
        for match in _VARIABLE.finditer(document):
            name = match.group("braced") or match.group("bare")
            if name:
                found.add(name)
    elif isinstance(document, Mapping):
        for key, value in document.items():
            found |= variables(key) | variables(value)
    elif isinstance(document, list):
        for item in document:
            found |= variables(item)
    return found


def _interpolate_string(text: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("braced") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        value = env.get(name)
        empty = value is None or (value == "" and op is not None and op.startswith(":"))
        if op in (":-", "-") and (value is None if op == "-" else empty):
            return arg
        if op in (":?", "?") and (value is None if op == "?" else empty):
            raise UnsetVariable(f"${{{name}}}: {arg}")
        if value is None:
            raise UnsetVariable(f"${{{name}}} has no value and no default")
        return value

    return _VARIABLE.sub(replace, text)


def interpolate(document: Any, env: Mapping[str, str] | None = None) -> Any:
    """``document`` with every ``${...}`` replaced as compose does (``env``: the
    shell environment compose would see; empty by default, so defaults apply)."""
    env = env or {}
    if isinstance(document, str):
        return _interpolate_string(document, env)
    if isinstance(document, Mapping):
        return {key: interpolate(value, env) for key, value in document.items()}
    if isinstance(document, list):
        return [interpolate(item, env) for item in document]
    return document


def services(document: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``services`` mapping of a compose document."""
    result: dict[str, dict[str, Any]] = document["services"]
    return result


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A service's environment as a dict (compose allows a mapping or KEY=VALUE items)."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in raw)
        return {key: value for key, value in pairs}
    return {str(key): "" if value is None else str(value) for key, value in raw.items()}


def compose_schema() -> dict[str, Any]:
    """The Compose Specification schema of compose-go ``SCHEMA_VERSION``, fetched once
    through the Go module proxy into var/cache/ (gitignored)."""
    if not SCHEMA_CACHE.exists():
        go = shutil.which("go")
        if go is None:
            pytest.fail(
                f"The Compose Specification schema is not in {SCHEMA_CACHE} and `go` is not "
                f"installed to fetch it ({SCHEMA_MODULE}@{SCHEMA_VERSION} through the Go module "
                "proxy). Install Go, or put compose-spec.json from that module there.",
                pytrace=False,
            )
        with tempfile.TemporaryDirectory() as outside_any_module:
            fetched = subprocess.run(
                [go, "mod", "download", "-json", f"{SCHEMA_MODULE}@{SCHEMA_VERSION}"],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
                cwd=outside_any_module,
                env={**os.environ, "GO111MODULE": "on", "GOFLAGS": "-mod=mod"},
            )
        if fetched.returncode != 0:
            pytest.fail(
                f"Could not fetch the Compose Specification schema ({SCHEMA_MODULE}@"
                f"{SCHEMA_VERSION}) through the Go module proxy:\n"
                f"{fetched.stdout[-2000:]}{fetched.stderr[-2000:]}",
                pytrace=False,
            )
        module_dir = Path(json.loads(fetched.stdout)["Dir"])
        SCHEMA_CACHE.parent.mkdir(parents=True, exist_ok=True)
        partial = SCHEMA_CACHE.with_suffix(f".{os.getpid()}.tmp")
        shutil.copyfile(module_dir / "schema" / "compose-spec.json", partial)
        partial.replace(SCHEMA_CACHE)
    schema: dict[str, Any] = json.loads(SCHEMA_CACHE.read_text())
    return schema
