"""Where benchmark scripts record their figures: one dated Markdown section appended per run."""

from __future__ import annotations

from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def record(file_name: str, lines: list[str]) -> None:
    """Append ``lines`` as a section of ``results/<file_name>`` and print them."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    with (RESULTS_DIR / file_name).open("a", encoding="utf-8") as out:
        out.write("\n".join(lines) + "\n")
    print("\n".join(lines))
