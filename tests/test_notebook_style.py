"""One step at a time: no code cell of any chapter is longer than 40 non-blank lines.

Every notebook listed in book.toml is measured, including chapters added later. A long cell is a wall a
learner has to read at once; a class grows over several shorter `#| export` cells instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from minibert.book.project import load_book

BOOK = load_book(Path(__file__).resolve().parent.parent)
CHAPTERS = list(BOOK.chapters)
MAX_LINES = 40


def non_blank_lines(source) -> int:
    text = "".join(source) if isinstance(source, list) else source
    return sum(1 for line in text.splitlines() if line.strip())


def long_cells(notebook: str) -> list[tuple[int, str, int]]:
    """(1-based cell number, cell id, non-blank lines) of every code cell longer than MAX_LINES."""
    nb = json.loads(BOOK.path(notebook).read_text(encoding="utf-8"))
    return [(i + 1, cell.get("id", "?"), non_blank_lines(cell["source"])) for i, cell in enumerate(nb["cells"])
            if cell["cell_type"] == "code" and non_blank_lines(cell["source"]) > MAX_LINES]


def test_counting_ignores_blank_lines():
    assert non_blank_lines("a = 1\n\n   \nb = 2\n") == 2
    assert non_blank_lines(["a = 1\n", "\n", "b = 2"]) == 2
    assert non_blank_lines("") == 0


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_no_code_cell_is_longer_than_40_non_blank_lines(chapter):
    found = long_cells(chapter.notebook)
    listing = ", ".join(f"cell {n} ({cell_id}): {lines} lines" for n, cell_id, lines in found)
    assert not found, (f"{chapter.notebook}: code cells longer than {MAX_LINES} non-blank lines: {listing}. "
                       f"Split each into smaller steps, each followed by the cell that proves it.")


# ------------------------------------------------------------------ re-running a cell repeats its output

# Chapters whose cells have been made safe to re-run in any order: each random cell seeds itself and no name is
# reused for a different tensor. Add a chapter here once it passes.
RERUN_SAFE = {
    "notebooks/00_bert_blueprint.ipynb",
    "notebooks/01_residual_add_norm.ipynb",
    "notebooks/02_dropout.ipynb",
}


def _text_outputs(cell) -> str:
    """What nbval compares, roughly: streams, errors and plain-text results (figures and widgets left out)."""
    import re

    parts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type == "error":
            parts.append(f"{out.ename}: {out.evalue}")
        elif "data" in out and not {"image/png", "application/vnd.jupyter.widget-view+json"} & set(out["data"]):
            parts.append(out["data"].get("text/plain", ""))
    return re.sub(r"/tmp/\S+", "TMPPATH", "".join(parts))


@pytest.mark.parametrize("notebook", sorted(RERUN_SAFE))
def test_rerunning_any_cell_after_the_whole_chapter_repeats_its_output(notebook, monkeypatch):
    """Run the chapter top to bottom, then run every code cell once more: each must print what it printed the
    first time (a learner who scrolls back and re-runs a cell must not get a different, silently wrong answer)."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    path = BOOK.path(notebook)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name="python3", timeout=300, allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    code = [(i, cell) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    with client.setup_kernel():
        for i, cell in code:
            client.execute_cell(cell, i)
        first = {i: _text_outputs(cell) for i, cell in code}
        changed = []
        for i, cell in code:
            client.execute_cell(cell, i)
            if _text_outputs(cell) != first[i]:
                changed.append(f"cell {i + 1} ({cell.get('id')}): {first[i][:80]!r} became {_text_outputs(cell)[:80]!r}")
    assert not changed, f"{notebook}: re-running these cells changes their output: " + "; ".join(changed)
