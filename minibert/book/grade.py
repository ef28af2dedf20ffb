"""`minibert grade SUBMISSIONS --out DIR`: grade a folder of submissions offline with stock nbgrader.

SUBMISSIONS holds one folder per student, each with the chapter notebooks the student hands in, named as in
the course (`SUBMISSIONS/<student>/04_multi_head_attention.ipynb`). For every student and every chapter
notebook that any student handed in, one job:

1. reads the submission (bounded size, must be a valid notebook; otherwise it scores 0 with a note);
2. copies a prepared nbgrader course (its source notebooks, made by `nbgrading.tagged_notebook`, and the
   gradebook that `nbgrader generate_assignment` filled) into a scratch folder of its own, with a copy of the
   course's package (`minibert/`, `checkpoints/`), and puts the submission into it;
3. runs stock `nbgrader autograde` and `generate_feedback` (nbgrader's Python API) in a child process whose
   working folder, HOME, temporary folder and PYTHONPATH all point into that scratch folder: a notebook that
   writes or deletes files by relative path, under ~ or in the temporary folder, or through the package it
   imports, touches only the scratch copy. Each cell may run `cell_timeout` seconds (nbgrader interrupts it
   and grades the rest); the whole job `timeout` seconds, after which it and its kernel are killed and the
   notebook scores 0 with a note. (This is not a sandbox against a student who sets out to damage files by
   absolute path: grade untrusted work in a container or an account of its own.)

DIR receives `grades.csv` (student, notebook, exercise, points, max, note: one row per exercise, and one row
with exercise "-" for a notebook that could not be graded) and `feedback/<student>/<notebook>.html` (nbgrader's
feedback, or a short page saying why there is none). DIR is written through minibert.book.outdir: it must be new,
empty or an earlier grading output; it may not lie inside SUBMISSIONS or the course. SUBMISSIONS is only read.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import html
import io
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .project import Book, BookError, Chapter

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_NOTEBOOK_BYTES = 20_000_000
CSV_NAME = "grades.csv"
COLUMNS = ["student", "notebook", "exercise", "points", "max", "note"]
_MARK = "MINIBERT_GRADE_JOB"


class GradeError(BookError):
    """Bad arguments to `minibert grade` (the folder, the output, the options)."""


@dataclass
class Row:
    student: str
    notebook: str
    exercise: str
    points: float
    max: float
    note: str = ""


@dataclass
class Job:
    student: str
    notebook: str  # file name, e.g. 00_bert_blueprint.ipynb
    assignment: str
    path: Path | None  # the submission, None when missing
    rows: list[Row] = field(default_factory=list)
    near: str = ""  # when not submitted: a file in the student's folder that looks like a renamed copy of it
    feedback: str | None = None  # HTML
    seconds: float = 0.0
    review: list[str] = field(default_factory=list)  # what in the student's code could fake a check (held)
    suspicious: list[str] = field(default_factory=list)  # the same, in a notebook that earned no points anyway


# ------------------------------------------------------------------------------------------- the folder


def find_submissions(book: Book, submissions: Path) -> tuple[list[Job], list[str]]:
    """The jobs for a submissions folder, and notes about what was left out (odd names, extra files)."""
    if not submissions.is_dir():
        raise GradeError(f"{submissions}: not a folder; expected SUBMISSIONS/<student>/<notebook>.ipynb")
    by_name = {Path(c.notebook).name: c for c in book.chapters}
    notes: list[str] = []
    students: dict[str, dict[str, Path]] = {}
    near: dict[str, dict[str, str]] = {}
    for entry in sorted(submissions.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_symlink() or not entry.is_dir():
            notes.append(f"{entry.name}: not a student folder, ignored")
            continue
        if not STUDENT_ID.match(entry.name):
            notes.append(f"{entry.name!r}: a student folder's name must be letters, digits, '_', '-' or '.' "
                         f"(at most 64), ignored")
            continue
        handed_in = {}
        for f in sorted(entry.iterdir()):
            if f.name in by_name and f.is_file() and not f.is_symlink():
                handed_in[f.name] = f
            elif f.name in by_name:
                notes.append(f"{entry.name}/{f.name}: a link or a folder, not a notebook file; ignored (not submitted)")
            elif not f.name.startswith("."):
                copy_of = _renamed_copy(f.name, by_name)
                notes.append(f"{entry.name}/{f.name}: not a chapter notebook of the course, ignored"
                             + (f" (rename it to {copy_of} to grade it)" if copy_of else ""))
                if copy_of:
                    near.setdefault(entry.name, {}).setdefault(copy_of, f.name)
        students[entry.name] = handed_in
    if not students:
        raise GradeError(f"{submissions}: no student folders; expected SUBMISSIONS/<student>/<notebook>.ipynb")
    wanted = [name for name in by_name if any(name in s for s in students.values())]
    if not wanted:
        raise GradeError(f"{submissions}: no student folder holds a chapter notebook of the course "
                         f"(e.g. {next(iter(by_name))})")
    jobs = [Job(student, name, Path(name).stem, handed_in.get(name),
                near="" if name in handed_in else near.get(student, {}).get(name, ""))
            for student, handed_in in students.items() for name in wanted]
    return jobs, notes


def _renamed_copy(name: str, chapters: dict) -> str | None:
    """The chapter notebook a file name looks like a renamed copy of (a browser's or a learning platform's
    download: `04_multi_head_attention (1).ipynb`, `04_multi_head_attention-alice.ipynb`), else None."""
    if not name.lower().endswith(".ipynb"):
        return None
    for chapter in chapters:
        stem = Path(chapter).stem
        if name.startswith(stem) and not name[len(stem):len(stem) + 1].isalnum():
            return chapter
    return None


def _refuse_overlap(book: Book, submissions: Path, out: Path) -> None:
    s, o = submissions.resolve(), out.expanduser().resolve()
    if o == s or s in o.parents:
        raise GradeError(f"refusing to write into {o}: it is inside the submissions folder {s}, which grading "
                         f"only reads; pick a folder elsewhere, e.g. _build/grades")
    if o in s.parents:
        raise GradeError(f"refusing to write into {o}: it holds the submissions folder {s}; pick a new folder")


# ------------------------------------------------------------------------------------------------ a job


def _scratch_course(master: Path, scratch: Path, code_from: Path, checkpoints: bool) -> tuple[Path, Path]:
    """Copy the prepared course and the course's package (with its checkpoints/ when the chapter reads them)
    into scratch; (course root, code folder)."""
    course = scratch / "course"
    shutil.copytree(master, course)
    code = scratch / "code"
    code.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(code_from / "minibert", code / "minibert", ignore=ignore)
    if checkpoints and (code_from / "checkpoints").is_dir():
        shutil.copytree(code_from / "checkpoints", code / "checkpoints", ignore=ignore)
    for name in ("home", "tmp", "work"):
        (scratch / name).mkdir()
    return course, code


def _environment(scratch: Path, code: Path, job_id: str) -> dict[str, str]:
    """What the worker sets in its environment for one submission (its kernel inherits it)."""
    home = scratch / "home"
    env = {}
    env.update(HOME=str(home), TMPDIR=str(scratch / "tmp"), TEMP=str(scratch / "tmp"), TMP=str(scratch / "tmp"),
               PYTHONPATH=str(code), PYTHONDONTWRITEBYTECODE="1", MPLCONFIGDIR=str(home / ".matplotlib"),
               MPLBACKEND="Agg", JUPYTER_CONFIG_DIR=str(home / ".jupyter"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), IPYTHONDIR=str(home / ".ipython"),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
    env[_MARK] = job_id
    return env


def _kill_marked(job_id: str) -> None:
    """Kill every process that carries this job's mark in its environment (its kernel, on Linux)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return
    needle = f"{_MARK}={job_id}".encode()
    for p in proc.iterdir():
        if p.name.isdigit() and int(p.name) != os.getpid():
            try:
                if needle in (p / "environ").read_bytes().split(b"\0"):
                    os.kill(int(p.name), signal.SIGKILL)
            except (OSError, ValueError):
                continue


def _page(student: str, notebook: str, title: str, text: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(notebook)}: "
            f"{html.escape(student)}</title></head>\n<body><h1>{html.escape(notebook)}</h1>\n"
            f"<p>Student: {html.escape(student)}</p>\n<h2>{html.escape(title)}</h2>\n<p>{html.escape(text)}</p>\n"
            f"</body></html>\n")


def _ungraded(job: Job, exercises: list[str], note: str, title: str) -> None:
    job.rows = [Row(job.student, job.notebook, e, 0.0, 1.0, note) for e in exercises] or \
        [Row(job.student, job.notebook, "-", 0.0, 0.0, note)]
    job.feedback = _page(job.student, job.notebook, title, note)


def _read_submission(path: Path) -> str | None:
    """None when the file is a readable notebook; else what is wrong with it."""
    import nbformat

    from minibert.safeio import read_json_file

    try:
        data = read_json_file(path, what="notebook", max_bytes=MAX_NOTEBOOK_BYTES)
    except (OSError, ValueError) as exc:  # the message names the file by its place in SUBMISSIONS only
        shown = str(exc).replace(str(path), f"{path.parent.name}/{path.name}")
        return f"the file is not a readable notebook ({shown})"
    try:
        nb = nbformat.from_dict(data)
        nbformat.validate(nb)
    except Exception as exc:  # nbformat raises several kinds of validation errors
        return f"the file is not a valid Jupyter notebook ({str(exc).splitlines()[0][:200]})"
    if nb.get("metadata", {}).get("kernelspec", {}).get("language", "python") != "python":
        return "the notebook is not a Python notebook"
    return None


# ------------------------------------------------------------------------------------ faked checks
#
# The checks run in the student's own kernel, after the student's code: that code can replace anything the
# checks use (importlib.reload, which the hidden test calls; sys.modules; torch.allclose; the check module's
# file on disk; IPython's input transformers). No test inside the kernel can be made safe from it, so grading
# looks at the code instead: a notebook whose own code (any cell that is not as handed out, locked checks
# aside, since nbgrader puts those back) does one of the things below is held for review, with 0 points and
# the reason, whatever its checks said. The answers the course expects never need any of them.

# Modules and built-ins that reach into Python's import system, other modules' namespaces or running code.
_TAMPER_MODULES = {"importlib", "builtins", "ctypes", "gc", "sys", "inspect", "unittest"}
_TAMPER_NAMES = {"__builtins__", "__import__", "exec", "eval", "compile", "globals", "get_ipython", "breakpoint",
                 "reload"}
_TAMPER_ATTRS = {"__code__", "__globals__", "__closure__", "__defaults__", "__kwdefaults__", "__file__",
                 "__spec__", "__path__", "__loader__", "__builtins__", "__class__", "__subclasses__",
                 "__getattribute__", "__eq__", "__ne__", "f_globals", "f_locals", "f_back", "mock"}
# Methods that make an answer compare equal, true or anything else to whatever a check expects.
_TAMPER_METHODS = {"__eq__", "__ne__", "__bool__", "__getattr__", "__getattribute__", "__instancecheck__",
                   "__subclasscheck__", "__array_function__", "__torch_function__", "__torch_dispatch__", "__hash__",
                   "__lt__", "__le__", "__gt__", "__ge__", "__abs__", "__len__", "__float__", "__int__", "__index__"}
_SAFE_MAGICS = {"time", "timeit", "matplotlib", "capture"}
_SAFE_SYS = {"maxsize", "float_info", "version_info", "version", "platform", "byteorder", "getsizeof", "stdout",
             "stderr"}


_AST_LOCK = threading.Lock()


def _parse(source: str):
    """ast.parse, one thread at a time: the grading threads parse at once, and CPython 3.11 before 3.11.9 can then
    raise "SystemError: AST constructor recursion depth mismatch" (seen in a full test run, Python 3.11.7)."""
    import ast

    with _AST_LOCK:
        return ast.parse(source)


def tampering(source: str, imported: set[str]) -> list[str]:
    """What in one cell of a student's own code could fake a check (an empty list when nothing): see above.
    `imported` holds the names the notebook binds by import (torch, F, ch00, BertConfig, ...)."""
    import ast

    try:
        tree = _parse(source)
    except SyntaxError:
        try:  # IPython syntax (%magic, !shell): look at the Python that IPython runs for it
            from IPython.core.inputtransformer2 import TransformerManager

            tree = _parse(TransformerManager().transform_cell(source))
        except Exception:  # a cell that is not Python at all fails on its own; nothing to fake with
            return []
        magic = True
    else:
        magic = False
    found = []
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}  # model.modules() is a call, not sys's

    def root(node):  # the name an attribute or item chain starts from (torch in torch.nn.functional.gelu)
        while isinstance(node, (ast.Attribute, ast.Subscript)):
            node = node.value
        return node.id if isinstance(node, ast.Name) else None

    def where(node) -> str:
        return f"line {node.lineno}: {ast.get_source_segment(source, node) or ast.unparse(node)}"[:120] \
            if not magic else ast.unparse(node)[:120]

    for node in ast.walk(tree):
        targets = []
        if isinstance(node, (ast.Assign, ast.Delete)):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for t in targets:
            for sub in ast.walk(t):
                if isinstance(sub, (ast.Attribute, ast.Subscript)) and (
                        root(sub) in imported | _TAMPER_MODULES or (isinstance(sub, ast.Attribute) and root(sub) is None)):
                    found.append(f"changes what an imported module holds ({where(sub)})")  # or hides which one
                    break
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in _TAMPER_METHODS:
            found.append(f"defines {node.name} (an object that compares equal to anything passes any check)")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            bad = [n for n in names if n.split(".")[0] in _TAMPER_MODULES - {"sys"}]
            if bad:
                found.append(f"imports {bad[0]}")
        elif isinstance(node, ast.Name) and node.id in _TAMPER_NAMES and not (
                magic and node.id == "get_ipython"):
            found.append(f"uses {node.id} ({where(node)})")
        elif isinstance(node, ast.Attribute):
            if node.attr in _TAMPER_ATTRS or (node.attr == "__dict__" and root(node) in imported | _TAMPER_MODULES):
                found.append(f"uses {node.attr} ({where(node)})")
            elif isinstance(node.value, ast.Name) and node.value.id == "sys" and node.attr not in _SAFE_SYS:
                found.append(f"uses sys.{node.attr}")
            elif node.attr in ("modules", "meta_path", "path_hooks") and id(node) not in called:
                found.append(f"uses .{node.attr} ({where(node)})")  # sys.modules under another name
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("setattr", "delattr", "vars") and (
                not node.args or root(node.args[0]) in imported | _TAMPER_MODULES):
            found.append(f"reaches into an imported module or class ({where(node)})")
        elif magic and isinstance(node, ast.Call) and getattr(node.func, "attr", "") in (
                "run_line_magic", "run_cell_magic", "system", "getoutput"):
            name = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else "?"
            if node.func.attr in ("system", "getoutput") or str(name).lstrip("%") not in _SAFE_MAGICS:
                found.append(f"runs IPython's {'shell' if node.func.attr in ('system', 'getoutput') else '%' + str(name)}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "exercises" in node.value:
            found.append(f"names the checks' files ({node.value[:60]!r})")
        elif isinstance(node, ast.Constant) and node.value in _TAMPER_METHODS | _TAMPER_ATTRS | _TAMPER_NAMES:
            found.append(f"names {node.value} in a string")
    return list(dict.fromkeys(found))


def _imported_names(cells: list[dict]) -> set[str]:
    import ast

    names = set()
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        try:
            tree = _parse(_cell_source(cell))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name != "*"}
    return names


def _cell_source(cell: dict) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s


def suspicious_code(submission: dict, handed_out: dict) -> list[str]:
    """`tampering` over every code cell of a submission that is not as handed out (`handed_out`: the course's
    nbgrader source of that notebook) and not a locked check (nbgrader puts those back before running)."""
    known = {_cell_source(c) for c in handed_out.get("cells", [])
             if c.get("cell_type") == "code" and not c.get("metadata", {}).get("nbgrader", {}).get("solution")}
    imported = _imported_names(handed_out.get("cells", [])) | _imported_names(submission.get("cells", []))
    found = []
    for n, cell in enumerate(submission.get("cells", []), start=1):
        meta = cell.get("metadata", {}).get("nbgrader", {}) if isinstance(cell.get("metadata"), dict) else {}
        src = _cell_source(cell)
        if cell.get("cell_type") != "code" or meta.get("locked") or src in known:
            continue
        found += [f"cell {n} {what}" for what in tampering(src, imported)]
    return found


def _package_hashes(folder: Path) -> dict[str, str]:
    import hashlib

    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


class Worker:
    """A child process that grades one submission at a time (`python -m minibert.book.grade --worker`).

    It stays up between submissions (importing nbgrader takes seconds); each submission's HOME, temporary
    folder, PYTHONPATH and mark are set in its environment before nbgrader starts that submission's kernel.
    When a submission runs past its timeout the worker and the submission's kernel are killed, and the next
    submission gets a new worker.
    """

    def __init__(self):
        self.proc: subprocess.Popen | None = None
        self.lines: "queue.Queue[str | None]" = queue.Queue()
        self.log = tempfile.TemporaryFile()

    def _start(self) -> None:
        self.lines = queue.Queue()
        env = dict(os.environ)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        self.proc = subprocess.Popen([sys.executable, "-m", "minibert.book.grade", "--worker"], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                     start_new_session=True, text=True, encoding="utf-8")
        proc, lines = self.proc, self.lines

        def read():
            for line in proc.stdout:
                if line.startswith("MINIBERT-GRADE "):
                    lines.put(line[len("MINIBERT-GRADE "):])
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()

    def run(self, spec: dict, timeout: float) -> dict | None:
        """The job's result, or None when it ran past `timeout` (worker and kernel killed)."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        try:
            self.proc.stdin.write(json.dumps(spec) + "\n")
            self.proc.stdin.flush()
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            self.stop()
            _kill_marked(spec["mark"])
            return None
        except OSError as exc:
            self.stop()
            return {"error": f"the grading process failed ({exc})"}
        _kill_marked(spec["mark"])
        if line is None:
            self.stop()
            return {"error": "the grading process stopped unexpectedly"}
        return json.loads(line)

    def stop(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                self.proc.wait(timeout=10)
            self.proc = None


def run_job(job: Job, master: Path, code_from: Path, exercises: list[str], worker: Worker, *, timeout: float,
            cell_timeout: float) -> Job:
    start = time.perf_counter()
    if job.path is None:
        _ungraded(job, exercises, "not submitted" + (f" (the folder holds {job.near}: rename it to {job.notebook} "
                                                     f"and grade again)" if job.near else ""), "Not submitted")
        return job
    problem = _read_submission(job.path)
    if problem:
        _ungraded(job, exercises, problem, "Not graded")
        return job
    scratch = Path(tempfile.mkdtemp(prefix="minibert-grade-"))
    try:
        source = master / "source" / job.assignment / job.notebook
        uses = "checkpoints" in source.read_text(encoding="utf-8")  # copied only for the chapters that name it
        course, code = _scratch_course(master, scratch, code_from, uses)
        suspicious = suspicious_code(json.loads(job.path.read_bytes().decode("utf-8")),
                                     json.loads(source.read_text(encoding="utf-8")))
        package_before = _package_hashes(code / "minibert")
        folder = course / "submitted" / job.student / job.assignment
        folder.mkdir(parents=True)
        shutil.copyfile(job.path, folder / job.notebook)
        spec = {"root": str(course), "assignment": job.assignment, "student": job.student,
                "notebook": Path(job.notebook).stem, "cell_timeout": max(1, int(cell_timeout)),
                "cwd": str(scratch / "work"), "env": _environment(scratch, code, scratch.name), "mark": scratch.name}
        result = worker.run(spec, timeout)
        if result is None:
            _ungraded(job, exercises, f"timed out: the notebook did not finish within {timeout:g} s (look for an "
                      f"endless loop); nothing was graded", "Timed out")
            return job
        if result.get("error"):
            _ungraded(job, exercises, f"nbgrader could not grade the notebook: {result['error']}", "Not graded")
            return job
        job.rows = [Row(job.student, job.notebook, r["exercise"], r["points"], r["max"], r["note"])
                    for r in result["rows"]]
        if _package_hashes(code / "minibert") != package_before:
            suspicious.append("the notebook changed the course package it imports (minibert/)")
        got = sum(r.points for r in job.rows)
        if suspicious and got == 0:  # nothing to hold back; the teacher still hears of it (notes.txt)
            job.suspicious = suspicious
        elif suspicious:
            job.review = suspicious
            for r in job.rows:
                r.note = (f"held for review, 0 points (the checks gave {got:g}/{len(job.rows)}; this one: "
                          f"{r.note}): {'; '.join(suspicious[:3])}")
                r.points = 0.0
        fb = course / "feedback" / job.student / job.assignment / (Path(job.notebook).stem + ".html")
        job.feedback = fb.read_text(encoding="utf-8") if fb.is_file() else _page(
            job.student, job.notebook, "No feedback", "nbgrader wrote no feedback for this notebook")
        return job
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        job.seconds = time.perf_counter() - start


def _exercise_of(grade_id: str) -> str:
    m = re.match(r"exercise_(\d+)_(\d+)_check$", grade_id)
    return f"{m[1]}.{m[2]}" if m else grade_id


def _failure(result: dict, what: str) -> str:
    """The useful line of a failed nbgrader step: the last error its log names."""
    lines = [ln.strip() for ln in (result.get("log") or "").splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", ln)]
    return f"nbgrader {what} failed: " + (errors[-1] if errors else (lines[-1] if lines else "no log"))[:300]


def _job_main(spec: dict) -> dict:
    """In the child process: autograde one submission, write its feedback, return its grades."""
    from nbgrader.api import Gradebook

    from .nbgrading import Course

    course = Course(timeout=spec["cell_timeout"])
    course.root = Path(spec["root"])
    api = course.api()
    result = api.autograde(spec["assignment"], spec["student"], force=True, create=True)
    if not result["success"]:
        return {"error": _failure(result, "autograde")}
    result = api.generate_feedback(spec["assignment"], spec["student"], force=True)
    if not result["success"]:
        return {"error": _failure(result, "generate_feedback")}
    graded = course.root / "autograded" / spec["student"] / spec["assignment"] / (spec["notebook"] + ".ipynb")
    errors = {}
    nb = json.loads(graded.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        err = next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)
        if gid and err:
            value = (err.get("evalue") or "").strip().splitlines()
            errors[gid] = f"{err.get('ename')}: {value[0] if value else ''}".strip().rstrip(":")
            if err.get("ename") in ("KeyboardInterrupt", "CellTimeoutError"):  # nbgrader interrupted it
                errors[gid] += f" after the cell timeout of {spec['cell_timeout']} s"
    rows = []
    with Gradebook(course.config().CourseDirectory.db_url, "minibert") as gb:
        sub = gb.find_submission_notebook(spec["notebook"], spec["assignment"], spec["student"])
        for g in sorted(sub.grades, key=lambda g: [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", g.name)]):
            score = g.score if g.score is not None else 0.0
            note = errors.get(g.name, "no points")
            answer = [v for k, v in errors.items() if k.startswith(g.name[:-len("check")] + "answer")]
            if answer and note != answer[0]:  # the check failed because the answer cell did: say so first
                note = f"the answer cell failed ({answer[0]}), then the check: {note}"
            rows.append({"exercise": _exercise_of(g.name), "points": float(score), "max": float(g.max_score),
                         "note": "correct" if score >= g.max_score else note})
    return {"rows": rows}


# ---------------------------------------------------------------------------------------------- the run


def grade(book: Book, submissions: Path | str, out: Path | str, *, timeout: float = 600, cell_timeout: float = 120,
          jobs: int = 1, progress=None) -> list[Job]:
    """Grade every submission; write grades.csv and feedback/ into `out`. Returns the jobs, graded."""
    from .nbgrading import Course, assignment_id, tagged_notebook, tools_on_path
    from .outdir import check_output_folder, output_folder

    submissions, out = Path(submissions), Path(out)
    for name, value in (("timeout", timeout), ("cell timeout", cell_timeout)):
        if not value > 0:
            raise GradeError(f"the {name} must be a positive number of seconds, got {value!r}")
    if not isinstance(jobs, int) or jobs < 1:
        raise GradeError(f"jobs must be a whole number of at least 1, got {jobs!r}")
    _refuse_overlap(book, submissions, out)
    check_output_folder(out, "grade", book)
    graded, notes = find_submissions(book, submissions)
    chapters: dict[str, Chapter] = {Path(c.notebook).name: c for c in book.chapters}
    needed = sorted({j.notebook for j in graded}, key=list(chapters).index)
    exercises = {}
    with Course(timeout=int(cell_timeout)) as course, tools_on_path():
        api = course.api()
        for name in needed:
            tagged = tagged_notebook(book, chapters[name])
            course.add_source(tagged)
            course.generate(api, assignment_id(chapters[name]))
            exercises[name] = [e.number for e in tagged.exercises]
        shutil.rmtree(course.root / "release", ignore_errors=True)
        workers: "queue.Queue[Worker]" = queue.Queue()
        for _ in range(jobs):
            workers.put(Worker())

        def one(j: Job) -> Job:
            worker = workers.get()
            try:
                return run_job(j, course.root, book.root, exercises[j.notebook], worker, timeout=timeout,
                               cell_timeout=cell_timeout)
            finally:
                workers.put(worker)

        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
                for f in concurrent.futures.as_completed([pool.submit(one, j) for j in graded]):
                    j = f.result()
                    if progress:
                        got = sum(r.points for r in j.rows)
                        top = sum(r.max for r in j.rows)
                        progress(f"{j.student} {j.notebook}: {got:g}/{top:g} ({j.seconds:.1f} s)"
                                 + (f"; HELD FOR REVIEW: {j.review[0]}" if j.review else ""))
        finally:
            while not workers.empty():
                workers.get().stop()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for j in graded:
        for r in j.rows:
            writer.writerow([r.student, r.notebook, r.exercise, f"{r.points:g}", f"{r.max:g}", r.note])
    with output_folder(book, out, "grade") as stage:
        (stage / CSV_NAME).write_text(buffer.getvalue(), encoding="utf-8")
        notes = notes + offline_mathjax(book, stage / "feedback", graded)
        for j in graded:
            page = stage / "feedback" / j.student / (Path(j.notebook).stem + ".html")
            page.parent.mkdir(parents=True, exist_ok=True)
            page.write_text(j.feedback or "", encoding="utf-8")
        held = [f"{j.student}/{j.notebook}: held for review, 0 points: {what}" for j in graded for what in j.review]
        held += [f"{j.student}/{j.notebook}: earned no points, but its code could fake a check: {what}"
                 for j in graded for what in j.suspicious]
        if notes or held:
            (stage / "notes.txt").write_text("\n".join(held + notes) + "\n", encoding="utf-8")
    return graded


# nbgrader's feedback template loads MathJax from a CDN (nbconvert's `mathjax()` macro and its default address),
# so a student reading feedback offline saw raw TeX. The pages get the book's trimmed MathJax copy instead.
_CDN_MATHJAX = re.compile(r'<script src="https://cdnjs\.cloudflare\.com/ajax/libs/mathjax/[^"?]*(\?[^"]*)?">')
MATHJAX_FOLDER = "_mathjax"  # feedback/_mathjax/: no student's folder (a student id starts with a letter or digit)


def offline_mathjax(book: Book, feedback: Path, jobs: list) -> list[str]:
    """Point every feedback page's MathJax at one copy in feedback/_mathjax/ (copied from node_modules/ if any page
    loads MathJax), falling back to the CDN if the page is opened away from that folder. Returns a note for
    notes.txt if node_modules/ holds no MathJax (the pages then keep the CDN)."""
    from .render import copy_assets

    pages = [j for j in jobs if j.feedback and _CDN_MATHJAX.search(j.feedback)]
    if not pages:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            copy_assets(book, Path(tmp), packages=("mathjax",))
        except BookError as exc:
            return [f"feedback pages load MathJax from the internet (maths shows as TeX offline): {exc}"]
        feedback.mkdir(parents=True, exist_ok=True)
        shutil.move(str(Path(tmp) / "assets" / "mathjax"), str(feedback / MATHJAX_FOLDER))

    def local(match: re.Match) -> str:
        cdn = match.group(0)[len('<script src="'):-2]
        fallback = ("var s=document.createElement('script');s.src='" + cdn + "';document.head.appendChild(s)")
        return f'<script src="../{MATHJAX_FOLDER}/MathJax.js{match.group(1) or ""}" onerror="{fallback}">'

    for j in pages:
        j.feedback = _CDN_MATHJAX.sub(local, j.feedback)
    return []


def read_gradebook(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _worker() -> int:
    """`python -m minibert.book.grade --worker`: one JSON job per line in, one result line out."""
    import nbgrader.apps  # noqa: F401  (imported once, before any submission runs)

    base = dict(os.environ)
    for line in sys.stdin:
        spec = json.loads(line)
        os.environ.clear()
        os.environ.update(base)
        for key in [k for k in os.environ if k.startswith(("JUPYTER", "IPYTHON", "MPL", "PYTHONPATH"))]:
            del os.environ[key]
        os.environ.update(spec["env"])
        tempfile.tempdir = None  # read TMPDIR again: this submission's temporary folder
        try:
            os.chdir(spec["cwd"])
            result = _job_main(spec)
        except Exception as exc:  # reported to the parent, which records the notebook as not graded
            result = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            os.chdir("/")
        sys.stdout.write("MINIBERT-GRADE " + json.dumps(result) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(_worker())
