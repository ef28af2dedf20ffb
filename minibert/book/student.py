"""Student notebooks: the chapters with every exercise's solution taken out, by nbgrader.

In the teacher's notebooks (notebooks/) each solution sits between `### BEGIN SOLUTION` and
`### END SOLUTION` lines (nbgrader's markers) in an exercise cell; the exercise's prompt is the
nearest markdown cell above that contains `**Exercise N.M.**` (or a heading `### Exercise N.M · title`), and the
cell after the exercise is its check. This module finds and validates that form (`find_exercises`, `regions`:
nbgrader itself only looks for the words BEGIN SOLUTION anywhere in a line, and says less about what is wrong);
minibert.book.nbgrading turns it into nbgrader metadata, and stock `nbgrader generate_assignment` makes the
student version: each solution region becomes

    raise NotImplementedError("Exercise N.M: <the prompt's first words>")

at the indentation of the BEGIN line (nbgrader's stub; the exercise's number and prompt are put into it
afterwards, because nbgrader has one stub text for every cell), the check cells are locked, their hidden tests
removed, and the outputs of exercise and check cells cleared; every other cell keeps its outputs. Everything is
built in memory first; only then are files written, into a new folder swapped in at the end
(minibert.book.outdir).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .mirror import _write_atomic
from .project import Book, BookError, Chapter

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
_MARKER = re.compile(r"^(?P<indent>[ \t]*)###\s*(?P<kind>BEGIN|END)\s+SOLUTION\s*$")
# A prompt: "**Exercise N.M.** text" in a paragraph, or a heading "### Exercise N.M · title" (or ":", "-", ".").
_PROMPT = re.compile(r"\*\*Exercise\s+(?P<number>\d+\.\d+)\.?\*\*\.?"
                     r"|^[ \t]{0,3}#{1,6}[ \t]*Exercise[ \t]+(?P<heading>\d+\.\d+)\.?[ \t]*[·:.—–-]?[ \t]*(?P<title>[^\n]*)$",
                     re.M)
DESCRIPTION_CHARS = 120  # the NotImplementedError message stays on one screen line
README = "README.md"


class StudentError(BookError):
    """A notebook's exercises are not in the form the student version needs."""


@dataclass
class Region:
    """One solution region: lines [begin, end] (0-based, markers included) of a cell's source."""

    begin: int
    end: int
    indent: str


@dataclass
class Exercise:
    number: str  # "0.1"
    description: str  # one line, plain text
    prompt_cell: int  # 0-based cell indices
    solution_cells: list[int] = field(default_factory=list)
    check_cell: int | None = None

    @property
    def message(self) -> str:
        return f"Exercise {self.number}: {self.description}"


@dataclass
class StudentNotebook:
    chapter: Chapter
    exercises: list[Exercise]
    text: str  # the student notebook, as written
    solution_lines: list[str]  # every line inside a solution region (markers excluded), for leak checks


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _set_source(cell: dict, text: str) -> None:
    # nbformat stores multi-line strings as a list of lines; keep that form so unchanged cells stay identical.
    cell["source"] = text.splitlines(keepends=True) if isinstance(cell.get("source"), list) else text


def dumps(nb: dict) -> str:
    """Serialise exactly as nbformat.writes does (and as `minibert run` stores notebooks), plus a final newline."""
    return json.dumps(nb, indent=1, sort_keys=True, separators=(",", ": "), ensure_ascii=False) + "\n"


def plain_text(markdown: str) -> str:
    """Markdown to one line of plain text: links, emphasis, code ticks and math dollars removed."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", markdown)
    parts = re.split(r"(`+)(.*?)\1", text)  # [prose, ticks, code, prose, ticks, code, ...]
    out = []
    for k, part in enumerate(parts):
        if k % 3 == 0:  # prose: drop emphasis markers and math dollars, keep snake_case names
            part = re.sub(r"\*{1,3}|\$|(?<!\w)_{1,2}|_{1,2}(?!\w)", "", part)
        if k % 3 != 1:
            out.append(part)
    return " ".join("".join(out).split())


def describe(prompt_text: str, limit: int = DESCRIPTION_CHARS) -> str:
    """A prompt as one line of plain text, cut at a word and ended with an ellipsis when over `limit` characters."""
    text = plain_text(prompt_text)
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0].rstrip(",;:-–— ") + "…"


def regions(source: str, where: str) -> list[Region]:
    """The solution regions of a cell's source; a BookError for unbalanced or nested markers."""
    found: list[Region] = []
    open_at: int | None = None
    indent = ""
    for i, line in enumerate(source.split("\n")):
        m = _MARKER.match(line)
        if not m:
            if "BEGIN SOLUTION" in line or "END SOLUTION" in line:
                raise StudentError(f"{where}, line {i + 1}: {line.strip()!r} looks like a solution marker but is not "
                                   f"exactly '{BEGIN}' or '{END}' on a line of its own")
            continue
        if m["kind"] == "BEGIN":
            if open_at is not None:
                raise StudentError(f"{where}, line {i + 1}: '{BEGIN}' inside another solution region "
                                   f"(opened on line {open_at + 1}); close it with '{END}' first")
            open_at, indent = i, m["indent"]
        else:
            if open_at is None:
                raise StudentError(f"{where}, line {i + 1}: '{END}' without a '{BEGIN}' above it")
            found.append(Region(open_at, i, indent))
            open_at = None
    if open_at is not None:
        raise StudentError(f"{where}, line {open_at + 1}: '{BEGIN}' is never closed by '{END}'")
    return found


def find_exercises(nb: dict, where: str) -> list[Exercise]:
    """The exercises of a notebook, in order: prompt cell, solution cell(s), check cell."""
    cells = nb.get("cells", [])
    exercises: list[Exercise] = []
    current: Exercise | None = None
    for i, cell in enumerate(cells):
        source = _source(cell)
        here = f"{where}, cell {i + 1}"
        if cell.get("cell_type") == "markdown":
            if any(_MARKER.match(line) for line in source.split("\n")):  # prose may mention the markers in `code`
                raise StudentError(f"{here}: solution markers in a markdown cell; only code cells can hold solutions")
            for m in _PROMPT.finditer(source):
                number = m["number"] or m["heading"]
                if any(e.number == number for e in exercises):
                    raise StudentError(f"{here}: a second prompt for Exercise {number}")
                text = m["title"] if m["heading"] and m["title"].strip() else source[m.end():].lstrip("\n").split("\n\n", 1)[0]
                current = Exercise(number, describe(text) or "see the prompt above", i)
                exercises.append(current)
            continue
        if cell.get("cell_type") != "code" or not regions(source, here):
            continue
        if current is None:
            raise StudentError(f"{here}: a solution region with no '**Exercise N.M.**' prompt in a markdown cell "
                               f"above it")
        if source.lstrip().startswith("#| export"):
            raise StudentError(f"{here}: a solution region inside a '#| export' cell would put the solution into "
                               f"the package; export the finished code elsewhere")
        current.solution_cells.append(i)
    for e in exercises:
        if not e.solution_cells:
            continue
        # The check is the first code cell after the last solution cell.
        j = e.solution_cells[-1] + 1
        while j < len(cells) and cells[j].get("cell_type") != "code":
            j += 1
        e.check_cell = j if j < len(cells) else None
    return exercises


_CACHE: dict[tuple[str, str], StudentNotebook] = {}


def _key(book: Book, chapter: Chapter) -> tuple[str, str]:
    import hashlib

    path = book.path(chapter.notebook)
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise StudentError(f"{chapter.notebook}: cannot read the notebook ({exc})") from None
    return str(path.resolve()), digest


def student_notebooks(book: Book, chapters: list[Chapter]) -> list[StudentNotebook]:
    """The student versions of some chapters, made by stock `nbgrader generate_assignment` (minibert.book.nbgrading).

    Remembered per notebook content for the life of the process (the book, the slides and the tests ask for
    the same chapters several times; nbgrader takes a few seconds per chapter).
    """
    from .nbgrading import release

    keys = {c.notebook: _key(book, c) for c in chapters}
    todo = [c for c in chapters if keys[c.notebook] not in _CACHE]
    if todo:
        for chapter, (nb, tagged) in zip(todo, release(book, todo).values()):
            _CACHE[keys[chapter.notebook]] = StudentNotebook(chapter, tagged.exercises, dumps(nb), tagged.solution_lines)
    return [_CACHE[keys[c.notebook]] for c in chapters]


def student_notebook(book: Book, chapter: Chapter) -> StudentNotebook:
    """The student version of one chapter, in memory (see student_notebooks)."""
    return student_notebooks(book, [chapter])[0]


def readme(book: Book, notebooks: list[StudentNotebook]) -> str:
    rows = "\n".join(
        f"| {Path(s.chapter.notebook).name} | {s.chapter.title} | "
        f"{', '.join(e.number for e in s.exercises) or '—'} |" for s in notebooks)
    return f"""# {book.title}: student notebooks

These are the course's chapters with the exercises' solutions taken out. Work through each notebook from
the top: everything runs until the first exercise, which stops with

    NotImplementedError: Exercise N.M: ...

That is where your work starts.

## Doing an exercise

1. Read the exercise's prompt (the paragraph or heading that starts with **Exercise N.M**).
2. In the cell below it, replace the line `raise NotImplementedError("Exercise N.M: ...")` with your code.
   Keep the rest of the cell as it is: it sets up names the check needs.
3. Run that cell, then the check cell right after it. The check compares your answer with an independent
   computation and prints `Exercise N.M: correct.`, or raises `ExerciseError` saying what is wrong and
   giving a hint. Fix and run both cells again.
4. Carry on down the notebook: the cells after an exercise do not depend on your answer.

## Running the notebooks and the checks

The checks live in the `minibert` package (`minibert.exercises`), so open the notebooks with the Python
environment the course sets up. From the course repository:

    make setup                      # once: creates .venv with everything the course needs
    .venv/bin/jupyter lab path/to/this/folder

With your own Python 3.11 environment instead, install the course package into it once:
`pip install -e "path/to/the/course[course]"`.

Run a whole notebook from the command line (it stops at the first exercise you have not done yet):

    .venv/bin/jupyter nbconvert --to notebook --execute --stdout 00_bert_blueprint.ipynb > /dev/null

## Chapters and exercises

| notebook | chapter | exercises |
|---|---|---|
{rows}
"""


def build_student(book: Book, out: Path) -> list[Path]:
    """Write every chapter's student notebook and a README into `out`; return the paths written.

    Everything is built (and every chapter checked) before anything is written; `out` must be new, empty or
    an earlier student folder (minibert.book.outdir), and is replaced only when every file was written.
    """
    from .outdir import output_folder

    out = Path(out)
    notebooks = student_notebooks(book, list(book.chapters))
    files = {Path(s.chapter.notebook).name: s.text for s in notebooks}
    files[README] = readme(book, notebooks)
    with output_folder(book, out, "student") as stage:
        for name, text in files.items():
            _write_atomic(stage / name, text)
    return [out / name for name in files]
