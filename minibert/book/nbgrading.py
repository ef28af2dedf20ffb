"""The course on nbgrader: exercise metadata derived at build time, and stock nbgrader run in a temporary course.

The teacher's notebooks carry no nbgrader metadata; each exercise has the form student.py describes (a prompt,
a code cell with a `### BEGIN SOLUTION` ... `### END SOLUTION` region, the check cell after it). Stock
`nbgrader generate_assignment` refuses such a notebook ("Solution region detected in a non-solution cell"):
its ClearSolutions step finds the markers in a cell whose metadata does not say `solution: true`, and nbgrader
needs that metadata to give the cell a grade_id it can track. `tagged_notebook` writes that metadata into a
copy of the notebook (the notebook itself is never changed, so new chapters are covered as they land):

- each solution cell: an autograded answer (`solution: true`, grade_id `exercise_N_M_answer`);
- a cell with a student replacement (student.student_cells): the replacement as its source;
- the check cell: an autograded, locked test cell (`grade: true`, `points`, grade_id `exercise_N_M_check`),
  with a hidden test (`### BEGIN HIDDEN TESTS`) that grades with a freshly loaded copy of the course's check:
  the visible check names the function it calls, so a student could make it pass by redefining or patching
  that function in an answer cell; the hidden one cannot be reached from the notebook and is put back by
  `nbgrader autograde`.

`Course` is a temporary nbgrader course directory (its own gradebook database, exchange folder and config,
nothing read from the user's Jupyter or nbgrader config) in which the stock `generate_assignment`,
`autograde` and `generate_feedback` run through nbgrader's Python API.
"""

from __future__ import annotations

import ast
import contextlib
import json
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .project import Book, BookError, Chapter
from .student import Exercise, StudentError, _source, find_exercises, regions, student_cells

SCHEMA_VERSION = 3
POINTS = 1  # per exercise
# nbgrader's ClearSolutions puts one stub in place of every solution region (indented like the BEGIN line);
# build_release then names the exercise in it (nbgrader's stub is one text for all cells, see _name_stubs).
STUB = 'raise NotImplementedError("Exercise: write your answer here")'
HIDDEN_BEGIN = "### BEGIN HIDDEN TESTS"
HIDDEN_END = "### END HIDDEN TESTS"
_CHECK_CALL = re.compile(r"^ch\d\d$")


def grade_id(number: str, kind: str, k: int = 0) -> str:
    """nbgrader's cell id for an exercise's cell: letters, digits and underscores only."""
    return f"exercise_{number.replace('.', '_')}_{kind}" + (f"_{k + 1}" if k else "")


def assignment_id(chapter: Chapter) -> str:
    """The nbgrader assignment of a chapter: its notebook's stem (00_bert_blueprint)."""
    return Path(chapter.notebook).stem


def hidden_test(check: str) -> str | None:
    """The hidden part of a check cell: each `chNN.check_x(...)` call again, on a freshly loaded chNN."""
    try:
        tree = ast.parse(check)
    except SyntaxError:
        return None
    calls = []
    for node in tree.body:
        if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Attribute) and isinstance(node.value.func.value, ast.Name)
                and _CHECK_CALL.match(node.value.func.value.id) and node.value.func.attr.startswith("check")):
            module = node.value.func.value.id
            args = ast.get_source_segment(check, node.value)[len(module):]
            calls.append(f"_importlib.reload(_importlib.import_module('minibert.exercises.{module}')){args}")
    if not calls:
        return None
    return "\n".join([HIDDEN_BEGIN,
                      "# the course's own check, loaded afresh: what the cells above define cannot change it",
                      "import importlib as _importlib",
                      "_importlib.reload(_importlib.import_module('minibert.exercises'))",
                      *calls, HIDDEN_END])


def _meta(grade_id_: str, *, solution: bool, grade: bool, points: int = 0) -> dict:
    meta = {"grade": grade, "grade_id": grade_id_, "locked": grade, "schema_version": SCHEMA_VERSION,
            "solution": solution, "task": False}
    if grade:
        meta["points"] = points
    return meta


@dataclass
class Tagged:
    chapter: Chapter
    nb: dict
    exercises: list[Exercise]
    solution_lines: list[str]  # every line inside a solution region, markers excluded
    replaced: list[int]  # cells whose source is now their student replacement (student.student_cells)


def tagged_notebook(book: Book, chapter: Chapter) -> Tagged:
    """The teacher's notebook with nbgrader metadata on every exercise (and exercise outputs cleared)."""
    path = book.path(chapter.notebook)
    try:
        nb = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StudentError(f"{chapter.notebook}: cannot read the notebook ({exc})") from None
    exercises = find_exercises(nb, chapter.notebook)
    replaced = student_cells(nb, chapter.notebook, exercises)
    cells = nb["cells"]
    lines: list[str] = []
    for e in exercises:
        for k, i in enumerate(e.solution_cells):
            src = _source(cells[i])
            where = f"{chapter.notebook}, cell {i + 1}"
            src_lines = src.split("\n")
            for r in regions(src, where):
                lines += src_lines[r.begin + 1:r.end]
            cells[i].setdefault("metadata", {})["nbgrader"] = _meta(grade_id(e.number, "answer", k), solution=True,
                                                                    grade=False)
        if e.check_cell is None:
            raise StudentError(f"{chapter.notebook}: Exercise {e.number} has no check cell after its solution")
        check = cells[e.check_cell]
        src = _source(check)
        if "SOLUTION" in src or "HIDDEN TESTS" in src:
            raise StudentError(f"{chapter.notebook}, cell {e.check_cell + 1}: the check of Exercise {e.number} "
                               f"holds a solution or hidden-test marker; only the exercise cell above may")
        hidden = hidden_test(src)
        if hidden:
            src = src.rstrip("\n") + "\n" + hidden
        check["source"] = src
        check.setdefault("metadata", {})["nbgrader"] = _meta(grade_id(e.number, "check"), solution=False, grade=True,
                                                             points=POINTS)
        for i in [*e.solution_cells, e.check_cell]:
            cells[i]["outputs"] = []
            cells[i]["execution_count"] = None
    return Tagged(chapter, nb, exercises, lines, replaced)


def _quiet(log: logging.Logger) -> None:
    log.setLevel(logging.ERROR)
    for h in list(log.handlers):
        h.setLevel(logging.ERROR)


class Course:
    """A temporary nbgrader course directory; `with Course(...) as course:` removes it afterwards."""

    def __init__(self, *, timeout: int = 120, parent: Path | None = None):
        self.timeout = timeout
        self.parent = parent
        self.root: Path | None = None

    def __enter__(self) -> "Course":
        self.root = Path(tempfile.mkdtemp(prefix="minibert-nbgrader-", dir=self.parent))
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def config(self):
        from traitlets.config import Config

        c = Config()
        c.CourseDirectory.root = str(self.root)
        c.CourseDirectory.course_id = "minibert"
        c.CourseDirectory.db_url = f"sqlite:///{self.root / 'gradebook.db'}"
        c.Exchange.root = str(self.root / "exchange")
        c.ClearSolutions.code_stub = {"python": STUB}
        # Keep the figures and printed results of every cell the student does not write (nbgrader's default
        # clears all outputs); tagged_notebook already cleared the exercise cells' outputs.
        from nbgrader.converters import GenerateAssignment
        from nbgrader.preprocessors import ClearOutput

        c.GenerateAssignment.preprocessors = [p for p in GenerateAssignment.class_traits()["preprocessors"].default()
                                              if p is not ClearOutput]
        c.OverwriteCells.add_missing_cells = True  # a deleted check cell is put back and run, not skipped
        c.Execute.timeout = self.timeout  # seconds per cell; an endless loop is interrupted, the rest graded
        c.Execute.kernel_name = "python3"
        return c

    def api(self):
        import functools

        import nbgrader.api
        from nbgrader.apps import NbGraderAPI
        from nbgrader.coursedir import CourseDirectory

        # nbgrader asks the `alembic` command for the head of its own database migrations each time it opens
        # a gradebook (a second or so); the answer depends only on the installed nbgrader: ask once.
        if not hasattr(nbgrader.api.get_alembic_version, "cache_info"):
            nbgrader.api.get_alembic_version = functools.cache(nbgrader.api.get_alembic_version)
        (self.root / "exchange").mkdir(exist_ok=True)
        config = self.config()
        api = NbGraderAPI(CourseDirectory(config=config), config=config)
        _quiet(api.log)
        return api

    def add_source(self, tagged: Tagged) -> Path:
        folder = self.root / "source" / assignment_id(tagged.chapter)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / Path(tagged.chapter.notebook).name
        path.write_text(json.dumps(tagged.nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    def generate(self, api, assignment: str) -> Path:
        result = api.generate_assignment(assignment, force=True, create=True)
        if not result["success"]:
            raise BookError(f"nbgrader generate_assignment {assignment} failed:\n{result.get('error') or ''}\n"
                            f"{result.get('log') or ''}".rstrip())
        return self.root / "release" / assignment


def _name_stubs(nb: dict, teacher: dict, exercises: list[Exercise], where: str) -> None:
    """Put each exercise's number and prompt into nbgrader's stub, so a student sees which exercise stopped;
    refuse a student cell that is no longer Python (markers around part of a statement)."""
    by_cell = {i: e for e in exercises for i in e.solution_cells}
    for i, cell in enumerate(nb["cells"]):
        if i not in by_cell:
            continue
        src = _source(cell)
        if STUB not in src:
            raise StudentError(f"{where}, cell {i + 1}: nbgrader left no stub in Exercise {by_cell[i].number}'s cell")
        named = src.replace(STUB, f"raise NotImplementedError({_literal(by_cell[i].message)})")
        cell["source"] = named.splitlines(keepends=True)
        try:
            ast.parse(named)
        except SyntaxError as exc:
            try:  # IPython magics (%time, !cmd) are not Python: only complain when the teacher's cell parses
                ast.parse(_source(teacher["cells"][i]))
            except SyntaxError:
                continue
            raise StudentError(f"{where}, cell {i + 1}: without its solution the cell is not valid Python "
                               f"({exc.msg}, line {exc.lineno}); put the markers around whole statements") from None


def _literal(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def release(book: Book, chapters: list[Chapter]) -> dict[str, tuple[dict, Tagged]]:
    """Each chapter's student version made by stock `nbgrader generate_assignment`: stem -> (notebook, Tagged)."""
    out = {}
    tagged = [tagged_notebook(book, c) for c in chapters]
    with Course() as course, tools_on_path():
        api = course.api()
        for t in tagged:
            course.add_source(t)
            folder = course.generate(api, assignment_id(t.chapter))
            nb = json.loads((folder / Path(t.chapter.notebook).name).read_text(encoding="utf-8"))
            _name_stubs(nb, t.nb, t.exercises, t.chapter.notebook)
            out[assignment_id(t.chapter)] = (nb, t)
    return out


@contextlib.contextmanager
def tools_on_path():
    """nbgrader runs the `alembic` command of its own environment: put this Python's scripts first on PATH."""
    import os
    import sys

    before = os.environ.get("PATH")
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), *([before] if before else [])])
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = before
