"""`minibert check` fails when a chapter that displays widgets has lost their stored state (a live JupyterLab
save drops it; the book then shows the widgets' Python repr and nbval does not notice)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from minibert.book.mirror import WIDGET_STATE, WIDGET_VIEW, missing_widget_state
from minibert.book.project import load_book

ROOT = Path(__file__).resolve().parent.parent
CHAPTER = "notebooks/07_counting_parameters.ipynb"


@pytest.fixture
def course(tmp_path: Path) -> Path:
    """A copy of the course (book.toml, notebooks, package) whose files a test may damage."""
    for name in ("book.toml", "pyproject.toml"):  # the package version in __init__.py comes from pyproject
        shutil.copy(ROOT / name, tmp_path / name)
    ignore = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints")
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks", ignore=ignore)
    shutil.copytree(ROOT / "minibert", tmp_path / "minibert", ignore=ignore)
    return tmp_path


def view_ids(nb: dict) -> list[str]:
    return [out["data"][WIDGET_VIEW]["model_id"] for cell in nb["cells"] if cell["cell_type"] == "code"
            for out in cell.get("outputs", []) if WIDGET_VIEW in out.get("data", {})]


def check(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "minibert", "--root", str(root), "check"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_the_course_stores_the_state_of_every_widget_it_displays():
    nb = json.loads((ROOT / CHAPTER).read_text())
    ids = view_ids(nb)
    assert ids, "chapter 07 displays its calculators"
    state = nb["metadata"]["widgets"][WIDGET_STATE]["state"]
    assert set(ids) <= set(state)
    assert missing_widget_state(load_book(ROOT)) == []


def test_check_fails_without_the_stored_state_and_names_the_fix(course):
    assert check(course).returncode == 0
    path = course / CHAPTER
    nb = json.loads(path.read_text())
    del nb["metadata"]["widgets"]  # what a live session's save leaves: the outputs still point at the widgets
    path.write_text(json.dumps(nb))
    result = check(course)
    assert result.returncode == 1
    assert CHAPTER in result.stderr and "no widget state" in result.stderr
    assert "`minibert run 07`" in result.stderr


def test_check_fails_when_one_displayed_widget_has_no_state(course):
    path = course / CHAPTER
    nb = json.loads(path.read_text())
    ids = view_ids(nb)
    del nb["metadata"]["widgets"][WIDGET_STATE]["state"][ids[-1]]  # a re-run cell's new model, never stored
    path.write_text(json.dumps(nb))
    problems = missing_widget_state(load_book(course))
    assert len(problems) == 1 and CHAPTER in problems[0] and f"1 of its {len(ids)}" in problems[0]
    assert "minibert run 07" in problems[0]
    assert check(course).returncode == 1


def test_chapters_without_widgets_need_no_state(course):
    path = course / CHAPTER
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:  # no widget outputs left: nothing to draw, nothing to store
        for out in cell.get("outputs", []):
            out.get("data", {}).pop(WIDGET_VIEW, None)
    del nb["metadata"]["widgets"]
    path.write_text(json.dumps(nb))
    assert missing_widget_state(load_book(course)) == []
