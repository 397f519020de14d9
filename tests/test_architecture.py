"""The core package's shape: imports point down its layers, and it imports without the extras."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "recsys"

# Sub-packages from the bottom up: a module may import from its own layer and the ones below.
LAYERS: list[set[str]] = [
    {"config", "storage", "progress"},
    {"data"},
    {"models"},
    {"evaluation"},
    {"publishing"},
    {"pipeline", "service", "experiments"},
    {"cli"},
]
# Modules that need an optional extra of pyproject.toml, and the third-party packages they import.
EXTRAS: dict[str, tuple[str, ...]] = {
    "recsys.pipeline.airflow": ("airflow",),
    "recsys.experiments": ("mlflow", "matplotlib"),
}


def _layer(part: str) -> int:
    return next(number for number, layer in enumerate(LAYERS) if part in layer)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_recsys_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("recsys.")}


def _sub_package(module: str) -> str:
    return module.split(".")[1]


def test_every_sub_package_has_a_layer() -> None:
    parts = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir() if not p.name.startswith("_")}
    parts = {p for p in parts if (PACKAGE / p).is_dir() or (PACKAGE / f"{p}.py").is_file()}
    assert parts == set().union(*LAYERS)


def test_imports_point_down_the_layers() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        if module == "recsys":
            continue
        own = _layer(_sub_package(module))
        for imported in _imported_recsys_modules(path):
            if _layer(_sub_package(imported)) > own:
                upward.append(f"{module} -> {imported}")
    assert upward == []


def _core_modules() -> list[str]:
    modules = [_module_name(path) for path in sorted(PACKAGE.rglob("*.py"))]
    return [m for m in modules if not any(m == e or m.startswith(e + ".") for e in EXTRAS)]


# Importing a blocked top-level package raises ModuleNotFoundError, as on a machine without it.
_BLOCKING_PRELUDE = """
import importlib, importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None
sys.meta_path.insert(0, Block())
for module in sys.argv[2].split(","):
    importlib.import_module(module)
"""


def _import_blocking(modules: list[str], blocked: set[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _BLOCKING_PRELUDE, ",".join(sorted(blocked)), ",".join(modules)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
        timeout=120,
    )


def test_core_imports_without_the_optional_extras() -> None:
    blocked = {"airflow", "mlflow", "optuna", "matplotlib", "fastapi", "uvicorn", "papermill", "jupyterlab"}
    result = _import_blocking(_core_modules(), blocked)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("module", "needs"), sorted(EXTRAS.items()))
def test_extra_modules_really_need_their_extra(module: str, needs: tuple[str, ...]) -> None:
    # The blocking above is real: without its extra, the module does not import.
    leaf = module if module != "recsys.experiments" else "recsys.experiments.tracking"
    result = _import_blocking([leaf], set(needs))
    assert result.returncode != 0
    assert "blocked" in result.stderr


def test_extras_are_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = {name: " ".join(reqs) for name, reqs in project["optional-dependencies"].items()}
    assert "apache-airflow" in extras["airflow"]
    assert "mlflow" in extras["airflow"]  # the training stages log to MLflow when it is configured
    assert "mlflow" in extras["research"]
    assert "matplotlib" in extras["research"]
    assert "fastapi" in extras["service"]
