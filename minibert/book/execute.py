"""Execute chapter notebooks top to bottom and store their outputs (what nbval then compares)."""

from __future__ import annotations

import sys
import time

import nbformat
from nbclient import NotebookClient

from .mirror import _write_atomic
from .project import Book, Chapter


def execute_notebook(book: Book, chapter: Chapter, timeout: int = 600) -> float:
    path = book.path(chapter.notebook)
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}},
                            store_widget_state=True, record_timing=False)
    client.execute()
    seconds = time.perf_counter() - start
    # Keep only what the course needs in the metadata, so re-running changes no bytes but outputs.
    nb.metadata.pop("papermill", None)
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.validate(nb)
    _write_atomic(path, nbformat.writes(nb) + "\n")
    return seconds


def execute_notebooks(book: Book, chapters: list[Chapter]) -> None:
    for chapter in chapters:
        print(f"minibert run: executing {chapter.notebook} ...", end=" ", flush=True, file=sys.stderr)
        seconds = execute_notebook(book, chapter)
        print(f"{seconds:.1f}s", file=sys.stderr)
