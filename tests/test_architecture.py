"""Who may import whom: meshmart_common never imports a service; services never import each other.

The check reads every module's AST (nothing is imported or executed), so it
also sees imports inside functions, under ``if TYPE_CHECKING`` and through
``importlib.import_module("...")`` / ``__import__("...")`` with a literal name.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMON_SRC = ROOT / "libs" / "common" / "src"
SERVICES = ROOT / "services"
SERVICE_SUFFIX = "_service"


@dataclass(frozen=True)
class Violation:
    """One forbidden import."""

    filename: str
    line: int
    imported: str
    reason: str

    def __str__(self) -> str:
        return f"{self.filename}:{self.line}: imports {self.imported} ({self.reason})"


def imported_modules(source: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """Every absolute module name ``source`` imports, with its line number."""
    tree = ast.parse(source, filename=filename)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:  # relative imports stay in their package
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and _is_dynamic_import(node.func):
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.append((node.lineno, first.value))
    return found


def _is_dynamic_import(func: ast.expr) -> bool:
    if isinstance(func, ast.Name):
        return func.id in {"__import__", "import_module"}
    return isinstance(func, ast.Attribute) and func.attr == "import_module"


def find_violations(
    source: str, *, owner: str | None, filename: str = "<source>"
) -> list[Violation]:
    """Forbidden imports in ``source``.

    ``owner`` is the service package the file belongs to (``user_service``), or
    None for meshmart_common, which may import no service at all.
    """
    violations = []
    for line, module in imported_modules(source, filename):
        top = module.split(".")[0]
        if not top.endswith(SERVICE_SUFFIX) or top == owner:
            continue
        reason = (
            "meshmart_common must not import a service"
            if owner is None
            else f"{owner} must not import another service; use HTTP or events"
        )
        violations.append(Violation(filename, line, module, reason))
    return violations


def service_packages() -> dict[str, Path]:
    """{import name: service folder} for every services/<name>/src/<name>_service."""
    packages = {}
    for package in sorted(SERVICES.glob(f"*/src/*{SERVICE_SUFFIX}")):
        if package.is_dir():
            packages[package.name] = package.parents[1]
    return packages


def python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def violations_in(files: list[Path], owner: str | None) -> list[Violation]:
    found = []
    for path in files:
        filename = str(path.relative_to(ROOT))
        found.extend(find_violations(path.read_text(), owner=owner, filename=filename))
    return found


# --- the checks on the repository ---------------------------------------------------


def test_every_service_folder_has_its_package() -> None:
    packages = service_packages()
    assert {"user_service", "product_service"} <= set(packages)
    for name, folder in packages.items():
        assert folder.name + SERVICE_SUFFIX == name


def test_meshmart_common_imports_no_service() -> None:
    files = python_files(COMMON_SRC / "meshmart_common")
    assert any(p.name == "app.py" for p in files)  # the walk found the library
    violations = violations_in(files, owner=None)
    assert violations == [], "\n".join(map(str, violations))


@pytest.mark.parametrize("package", sorted(service_packages()))
def test_service_imports_no_other_service(package: str) -> None:
    folder = service_packages()[package]
    files = python_files(folder / "src") + python_files(folder / "tests")
    assert any(p.name == "main.py" for p in files)  # the walk found the service
    violations = violations_in(files, owner=package)
    assert violations == [], "\n".join(map(str, violations))


# --- the checker itself --------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "import product_service\n",
        "import product_service.domain.stock as stock\n",
        "from product_service.repository.models import Product\n",
        "from product_service import main\n",
        "def later():\n    from order_service.api import deps\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import trade_service\n",
        "import importlib\nmain = importlib.import_module('data_service.main')\n",
        "from importlib import import_module\nimport_module('order_service')\n",
        "m = __import__('product_service.events')\n",
        "import os, json, product_service\n",
    ],
)
def test_checker_catches_a_service_importing_another(source: str) -> None:
    [violation] = find_violations(source, owner="user_service", filename="x.py")
    assert violation.imported.split(".")[0] != "user_service"
    assert "user_service must not import another service" in str(violation)


@pytest.mark.parametrize(
    "source",
    [
        "from user_service.domain import users\n",
        "import user_service.main\n",
        "from . import deps\n",
        "from ..repository import models\n",
        "from meshmart_common.app import create_app\n",
        "import fastapi\nimport product_service_client\n",
        "name = 'product_service'\n",
    ],
)
def test_checker_allows_own_package_library_and_relative_imports(source: str) -> None:
    assert find_violations(source, owner="user_service") == []


def test_checker_catches_the_library_importing_a_service() -> None:
    source = "from meshmart_common.db import Database\nfrom user_service.settings import Settings\n"
    violations = find_violations(source, owner=None, filename="meshmart_common/x.py")
    assert [(v.line, v.imported) for v in violations] == [(2, "user_service.settings")]
    assert "meshmart_common must not import a service" in str(violations[0])


def test_checker_reports_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text('"""Doc."""\n\nimport os\nfrom product_service.api import router\n')
    violations = find_violations(bad.read_text(), owner="order_service", filename="bad.py")
    assert [str(v) for v in violations] == [
        "bad.py:4: imports product_service.api "
        "(order_service must not import another service; use HTTP or events)"
    ]
