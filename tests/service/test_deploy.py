"""Static checks of the deployment files: compose, Dockerfile, Prometheus rules, Grafana provisioning.

There is no Docker engine here, so the image is not built; what can be checked without one is:
``docker-compose config``, ``hadolint``, ``promtool``, that every referenced file exists, that
every variable is documented and that the image's package subset covers what the service imports.
Missing tools skip locally and fail under ``CI=true`` (``dev_scripts/ensure_test_services.sh``
installs them).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from recsys.config import Settings
from recsys.service.settings import ServiceSettings
from tests.conftest import unavailable
from tests.service.conftest import ROOT, SERVICE_DIR

COMPOSE = SERVICE_DIR / "docker-compose.yml"
DOCKERFILE = SERVICE_DIR / "Dockerfile"
ENV_EXAMPLE = SERVICE_DIR / ".env.example"
PROMETHEUS_DIR = SERVICE_DIR / "prometheus"
DASHBOARD = SERVICE_DIR / "grafana" / "dashboards" / "recsys_service.json"


def tool(name: str) -> str:
    """Path of a command-line tool (the venv's first), or skip/fail when it is missing."""
    in_venv = Path(sys.executable).parent / name
    found = str(in_venv) if in_venv.exists() else shutil.which(name)
    if found is None:
        unavailable(f"{name} is not installed (run dev_scripts/ensure_test_services.sh)")
    assert found is not None
    return found


def run(command: list[str], cwd: Path = SERVICE_DIR, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=120, check=False, env=env
    )
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def env_example() -> dict[str, str]:
    pairs = (
        line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if re.match(r"^[A-Z_]+=", line)
    )
    return {key: value for key, value in pairs}


def clean_env() -> dict[str, str]:
    """The environment without the stack's variables, so only the env file counts."""
    names = set(env_example())
    return {k: v for k, v in os.environ.items() if k not in names}


# -- docker compose ---------------------------------------------------------------------------
def test_compose_config_is_valid_with_the_example_env() -> None:
    rendered = yaml.safe_load(
        run(
            [tool("docker-compose"), "--env-file", ".env.example", "-f", "docker-compose.yml", "config"],
            env=clean_env(),
        )
    )
    assert set(rendered["services"]) == {"recsys", "prometheus", "grafana"}
    recsys = rendered["services"]["recsys"]
    assert Path(recsys["build"]["context"]) == ROOT
    assert recsys["environment"]["RECSYS_DATABASE_URL"] == env_example()["RECSYS_DATABASE_URL"]
    assert rendered["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "change-me"


def test_compose_refuses_to_run_without_the_required_secrets(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = subprocess.run(
        [tool("docker-compose"), "--env-file", str(empty), "-f", "docker-compose.yml", "config"],
        cwd=SERVICE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=clean_env(),
    )
    assert result.returncode != 0
    assert "set RECSYS_DATABASE_URL in fast_api_service/.env" in result.stderr


def test_every_compose_variable_is_documented_in_env_example() -> None:
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE.read_text()))
    assert used, "the compose file reads no variable?"
    assert used <= set(env_example()), f"undocumented: {sorted(used - set(env_example()))}"
    # Every RECSYS_ variable documented is a real setting of the service (no typos).
    fields = {f"RECSYS_{name.upper()}" for name in ServiceSettings.model_fields}
    documented = {name for name in env_example() if name.startswith("RECSYS_")}
    compose_only = {"RECSYS_MEMORY_LIMIT", "RECSYS_HOST_PORT"}
    assert documented - compose_only <= fields
    # And every service-only setting is documented there.
    service_only = {
        f"RECSYS_{name.upper()}" for name in set(ServiceSettings.model_fields) - set(Settings.model_fields)
    }
    assert service_only <= documented


def test_files_referenced_by_compose_exist() -> None:
    services = compose()["services"]
    build = services["recsys"]["build"]
    context = (SERVICE_DIR / build["context"]).resolve()
    assert context == ROOT
    assert (context / build["dockerfile"]).resolve() == DOCKERFILE
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (SERVICE_DIR / source).exists(), f"{source} does not exist"
    # Prometheus reads its rules relative to its config: both are mounted into one folder.
    mounts = dict(v.split(":")[:2] for v in services["prometheus"]["volumes"] if v.startswith("."))
    assert (
        Path(mounts["./prometheus/prometheus.yml"]).parent == Path(mounts["./prometheus/alerts.yml"]).parent
    )
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    assert config["scrape_configs"][0]["static_configs"][0]["targets"] == ["recsys:8081"]


# -- Dockerfile ---------------------------------------------------------------------------------
def test_dockerfile_passes_hadolint() -> None:
    run([tool("hadolint"), "--failure-threshold", "info", "Dockerfile"])


def test_dockerfile_builds_a_slim_non_root_image_with_a_healthcheck() -> None:
    text = DOCKERFILE.read_text()
    instructions = [line.split()[0] for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert "FROM python:3.11-slim" in text
    assert "HEALTHCHECK" in instructions
    user = re.findall(r"^USER (\S+)", text, flags=re.MULTILINE)
    assert user and user[-1].split(":")[0] not in {"root", "0"}
    assert 'CMD ["uvicorn", "recsys_app.recsys_app:app", "--host", "0.0.0.0", "--port", "8081"]' in text


def test_files_copied_by_the_dockerfile_exist_and_are_in_the_build_context() -> None:
    sources = [
        part
        for line in DOCKERFILE.read_text().splitlines()
        if line.startswith("COPY ")
        for part in line.split()[1:-1]
    ]
    assert sources
    ignore = (SERVICE_DIR / "Dockerfile.dockerignore").read_text().splitlines()
    included = {rule[1:].rstrip("/") for rule in ignore if rule.startswith("!")}
    assert "*" in ignore
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file"
        assert source.rstrip("/").removeprefix("./") in included, (
            f"{source} is excluded from the build context"
        )


def test_image_requirements_are_the_root_pins() -> None:
    def pins(path: Path) -> dict[str, str]:
        lines = [line for line in path.read_text().splitlines() if "==" in line and not line.startswith("#")]
        return {canonicalize_name(n): v for n, v in (line.split("==") for line in lines)}

    service, root = pins(SERVICE_DIR / "requirements.txt"), pins(ROOT / "requirements.txt")
    constraints = pins(ROOT / "constraints.txt")
    for name, version in service.items():
        assert constraints.get(name) == version, f"{name}=={version} differs from constraints.txt"
        if name in root:
            assert root[name] == version, f"{name}=={version} differs from requirements.txt"


def _closure(names: set[str]) -> set[str]:
    """The distributions ``names`` need, themselves included (markers evaluated without extras)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for spec in metadata.requires(name) or []:
            requirement = Requirement(spec)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def _imports(path: Path) -> list[str]:
    """Modules a file imports: all of them in the service's own code, only module-level ones in
    the rest of the core package (a function-level import there, like boto3 for S3, runs only
    when that function is called, which the service does not)."""
    tree = ast.parse(path.read_text())
    own = SERVICE_DIR in path.parents or ROOT / "recsys" / "service" in path.parents
    nodes = ast.walk(tree) if own else iter(tree.body)
    modules: list[str] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.append(node.module)
    return modules


def _imported_packages() -> set[str]:
    """Top-level third-party packages imported by the app's code and the core modules it reaches."""
    files = list((SERVICE_DIR / "recsys_app").rglob("*.py"))
    done: set[Path] = set()
    found: set[str] = set()
    while files:
        path = files.pop()
        if path in done:
            continue
        done.add(path)
        for module in _imports(path):
            top = module.split(".")[0]
            if top == "recsys":
                target = ROOT / Path(*module.split("."))
                files += [p for p in (target.with_suffix(".py"), target / "__init__.py") if p.exists()]
            elif top not in sys.stdlib_module_names and top != "recsys_app":
                found.add(top)
    return found


def test_image_requirements_cover_every_import_of_the_service() -> None:
    requirements = SERVICE_DIR / "requirements.txt"
    names = {line.split("==")[0] for line in requirements.read_text().splitlines() if "==" in line}
    available = _closure(names)
    distributions = metadata.packages_distributions()
    imported = _imported_packages()
    assert {"fastapi", "pandas", "sqlalchemy", "prometheus_client", "psutil"} <= imported
    missing = {
        module: distributions.get(module)
        for module in imported
        if not {canonicalize_name(d) for d in distributions.get(module, [module])} & available
    }
    assert not missing, f"imported by the service but not installed in the image: {missing}"


# -- Prometheus and Grafana -------------------------------------------------------------------
def test_promtool_checks_the_config_and_the_rules() -> None:
    promtool = tool("promtool")
    assert "SUCCESS" in run([promtool, "check", "config", "prometheus.yml"], cwd=PROMETHEUS_DIR)
    assert "5 rules found" in run([promtool, "check", "rules", "alerts.yml"], cwd=PROMETHEUS_DIR)


def test_alert_rules_fire_as_designed() -> None:
    assert "SUCCESS" in run([tool("promtool"), "test", "rules", "alerts_test.yml"], cwd=PROMETHEUS_DIR)


def test_grafana_provisioning_matches_the_dashboard() -> None:
    grafana = SERVICE_DIR / "grafana"
    datasource = yaml.safe_load((grafana / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = datasource["datasources"]
    assert source["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((grafana / "provisioning" / "dashboards" / "dashboards.yml").read_text())
    mounts = dict(v.split(":")[:2] for v in compose()["services"]["grafana"]["volumes"] if v.startswith("."))
    assert provider["providers"][0]["options"]["path"] == mounts["./grafana/dashboards"]
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == source["uid"]
        assert all(target["datasource"]["uid"] == source["uid"] for target in panel["targets"])
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert {
        "RAM usage (MB)",
        "Request processing time p95",
        "Requests by status",
        "Default recommendation requests",
        "Personalized recommendation requests",
        "Online (i2i) recommendation requests",
    } <= titles
    ram = next(panel for panel in dashboard["panels"] if panel["title"] == "RAM usage (MB)")
    assert ram["fieldConfig"]["defaults"]["unit"] == "decmbytes"
    assert "/ 1024 / 1024" in ram["targets"][0]["expr"]
