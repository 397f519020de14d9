"""Run ``research.ipynb`` headless and keep the executed copy that can be read without running it.

``make notebook`` (``python -m recsys.experiments.notebook``) executes the notebook with papermill
on a synthetic twin in a fresh temporary folder (data, MLflow store) and writes
``research.executed.ipynb`` next to it, outputs and plots included. The run is independent of
the developer's environment: ``RECSYS_*`` variables are dropped, the kernel is the running
interpreter and the folder has no ``.env``. Timings and absolute paths are stripped from the
copy, so a refresh changes only what the notebook shows.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "research.ipynb"
EXECUTED = ROOT / "research.executed.ipynb"
KERNEL = "recsys-notebook"
# papermill tags the cell it adds with the parameters it was given.
INJECTED_TAG = "injected-parameters"
CELL_TIMEOUT_S = 900


@contextmanager
def _isolated_environment(folder: Path) -> Iterator[None]:
    """Environment of a kernel on the running interpreter, without the caller's ``RECSYS_*`` variables."""
    jupyter = folder / "jupyter"
    subprocess.run(
        [sys.executable, "-m", "ipykernel", "install", "--prefix", str(jupyter), "--name", KERNEL],
        check=True,
        capture_output=True,
        timeout=120,
    )
    saved = dict(os.environ)
    try:
        for name in [name for name in os.environ if name.startswith("RECSYS_")]:
            del os.environ[name]  # the parameters and defaults alone decide
        os.environ["JUPYTER_PATH"] = str(jupyter / "share" / "jupyter")
        os.environ["IPYTHONDIR"] = str(folder / "ipython")
        os.environ["OPENBLAS_NUM_THREADS"] = "1"
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def execute(output: Path, folder: Path, parameters: Mapping[str, Any]) -> Any:
    """Execute ``research.ipynb`` into ``output`` with the kernel's working folder ``folder``.

    Parameters
    ----------
    output : Path
        The executed notebook to write.
    folder : Path
        Working folder of the kernel (relative paths in ``parameters`` are relative to it).
    parameters : mapping
        Values of the parameters cell (``SCALE``, ``DATA_DIR``, ``TRACKING_URI``, ...).

    Returns
    -------
    nbformat.NotebookNode
        The executed notebook as papermill returns it.
    """
    import papermill

    with _isolated_environment(folder):
        return papermill.execute_notebook(
            str(NOTEBOOK),
            str(output),
            parameters=dict(parameters),
            kernel_name=KERNEL,
            cwd=str(folder),
            progress_bar=False,
            start_timeout=120,
            execution_timeout=CELL_TIMEOUT_S,
        )


def refresh(scale: str, output: Path = EXECUTED) -> Path:
    """Write the executed copy of the notebook, run on the ``scale`` synthetic twin.

    Returns
    -------
    Path
        ``output``.
    """
    import nbformat

    with tempfile.TemporaryDirectory(prefix="recsys-notebook-") as name:
        folder = Path(name)
        parameters = {
            "SCALE": scale,
            "DATA_DIR": "data",
            "TRACKING_URI": "sqlite:///mlflow.sqlite3",
            "EXPERIMENT": "research",
        }
        executed = execute(folder / "executed.ipynb", folder, parameters)
    for cell in executed.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    executed.metadata["papermill"] = {"parameters": parameters}
    nbformat.write(executed, output)  # type: ignore[no-untyped-call]
    return output


def main(argv: list[str] | None = None) -> None:
    """``python -m recsys.experiments.notebook [--scale small]``."""
    parser = argparse.ArgumentParser(description="Refresh research.executed.ipynb.")
    parser.add_argument("--scale", default="small", help="synthetic twin to run on (tiny, small, full)")
    arguments = parser.parse_args(argv)
    path = refresh(arguments.scale)
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
