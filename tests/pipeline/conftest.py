"""The tiny synthetic twin, written once for the pipeline tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from recsys.data.synthetic import generate_twin

# A moment inside the twin's period (May to mid-September 2015), like a DAG's data interval end.
MOMENT = "2015-09-10T22:00:00"


@pytest.fixture(scope="session")
def tiny_raw_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with the four raw files of the ``tiny`` twin (seed 42)."""
    folder = tmp_path_factory.mktemp("tiny_raw")
    generate_twin(folder, scale="tiny", seed=42)
    return folder
