"""`minibert grade`: hand-out -> collect -> autograde -> feedback on synthetic submissions, with stock nbgrader.

The submissions start from what students get (the student version, made by nbgrader generate_assignment) and
fill in the answer cells the way students do: the teacher's solution, hand-written wrong answers
(tests/test_student.py WRONG_ANSWERS), nothing, code that crashes, loops forever, writes and deletes files
outside its folder, or patches the visible check; plus files that are not notebooks, missing notebooks and
extra files. Expected points are written here from what each submission does, never read from a run.
Most are chapter 00 (among the cheapest chapters to execute), a few chapter 02; graded 3 at a time. A last test
autogrades the teacher's solutions of every chapter (stock nbgrader must take each chapter, new ones included).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from minibert.book.cli import main
from minibert.book.grade import CSV_NAME, STUDENT_ID, GradeError, grade, read_gradebook
from minibert.book.project import load_book
from minibert.book.student import student_notebook

from test_student import WRONG_ANSWERS

BOOK = load_book(Path(__file__).resolve().parent.parent)
CH00, CH02 = BOOK.chapters[0], BOOK.chapters[2]
NB00, NB02 = Path(CH00.notebook).name, Path(CH02.notebook).name


def _cells(nb):
    return nb["cells"]


def _src(cell) -> str:
    s = cell["source"]
    return "".join(s) if isinstance(s, list) else s


def _student(chapter) -> tuple[dict, dict, list]:
    s = student_notebook(BOOK, chapter)
    teacher = json.loads(BOOK.path(chapter.notebook).read_text(encoding="utf-8"))
    return json.loads(s.text), teacher, s.exercises


def _answer(chapter, answers: dict[str, str | None], prefix: dict[str, str] | None = None) -> dict:
    """The student version with answers filled in: "right" (the teacher's cell), code replacing the stub line
    (indented like it), or None (left as handed out); `prefix` puts top-level code before an answer cell."""
    nb, teacher, exercises = _student(chapter)
    for e in exercises:
        i = e.solution_cells[0]
        how = answers.get(e.number)
        if how == "right":
            _cells(nb)[i]["source"] = _src(_cells(teacher)[i])
        elif how is not None:
            lines = _src(_cells(nb)[i]).split("\n")
            k = next(n for n, line in enumerate(lines) if "raise NotImplementedError" in line)
            indent = lines[k][:len(lines[k]) - len(lines[k].lstrip())]
            lines[k:k + 1] = [indent + line for line in how.split("\n")]
            _cells(nb)[i]["source"] = "\n".join(lines)
        if prefix and e.number in prefix:
            _cells(nb)[i]["source"] = prefix[e.number] + "\n" + _src(_cells(nb)[i])
    return nb


ALL_RIGHT = {"0.1": "right", "0.2": "right", "0.3": "right"}
ESCAPE = """import os, pathlib, shutil, tempfile, minibert
for target in [pathlib.Path("../../../../../../../../escaped.txt"), pathlib.Path.home() / "escaped.txt",
               pathlib.Path(tempfile.gettempdir()) / "escaped.txt", pathlib.Path("escaped.txt")]:
    try:
        target.write_text("written by a submission")
    except OSError:
        pass
package = pathlib.Path(minibert.__file__).resolve().parent
for victim in [package.parent / "notebooks", package.parent / "checkpoints", package.parent / "README.md"]:
    shutil.rmtree(victim, ignore_errors=True) if victim.is_dir() else victim.unlink(missing_ok=True)
(package / "model.py").unlink(missing_ok=True)
"""
CHEAT = """from minibert.exercises import ch00
ch00.check_miniature = ch00.check_heads_for = ch00.check_shrink = lambda *a, **k: print("correct.")"""
# Replaces what the hidden test calls as well: every check, visible and hidden, then passes (3/3 without it).
CHEAT_RELOAD = """import importlib, types
from minibert.exercises import ch00
_fake = types.SimpleNamespace(check_miniature=print, check_heads_for=print, check_shrink=print)
importlib.reload = lambda module: _fake
ch00.check_miniature = ch00.check_heads_for = ch00.check_shrink = print"""


def _submissions() -> dict[tuple[str, str], tuple[str, object, list[float] | None, str]]:
    """(student, notebook) -> (kind, content, expected points per exercise or None (no row per exercise), note)."""
    wrong = WRONG_ANSWERS
    subs = {}

    def add(student, kind, content, points, note="", notebook=NB00):
        subs[(student, notebook)] = (kind, content, points, note)

    for n in range(2):
        add(f"right{n}", "all right", _answer(CH00, ALL_RIGHT), [1, 1, 1], "correct")
    for n in range(2):
        add(f"blank{n}", "unanswered (as handed out)", _answer(CH00, {}), [0, 0, 0], "NotImplementedError: Exercise 0.")
    for k, body in enumerate(wrong["0.1"]):
        add(f"wrong01_{k}", "0.1 wrong, rest right", _answer(CH00, {**ALL_RIGHT, "0.1": body}), [0, 1, 1],
            "ExerciseError: Exercise 0.1:")
    for k, body in enumerate(wrong["0.2"][:3]):
        add(f"wrong02_{k}", "0.2 wrong, rest right", _answer(CH00, {**ALL_RIGHT, "0.2": body}), [1, 0, 1],
            "ExerciseError: Exercise 0.2:")
    for k, body in enumerate(wrong["0.3"][:2]):
        add(f"wrong03_{k}", "0.3 wrong, rest right", _answer(CH00, {**ALL_RIGHT, "0.3": body}), [1, 1, 0],
            "ExerciseError: Exercise 0.3:")
    add("partial", "only 0.1 answered", _answer(CH00, {"0.1": "right"}), [1, 0, 0], "NotImplementedError")
    add("returns_none", "0.2 returns None", _answer(CH00, {**ALL_RIGHT, "0.2": "return None"}), [1, 0, 1],
        "Exercise 0.2")
    add("crash_raise", "0.1 raises", _answer(CH00, {**ALL_RIGHT, "0.1": "raise RuntimeError('oops')"}), [0, 1, 1],
        "RuntimeError: oops")
    add("crash_syntax", "0.3 has a syntax error", _answer(CH00, {**ALL_RIGHT, "0.3": "return (("}), [1, 1, 0],
        "the answer cell failed (SyntaxError")  # the cell defines nothing, so its check finds no shrink either
    add("crash_exit", "an answer kills its kernel", _answer(CH00, {**ALL_RIGHT, "0.2": "import os\nos._exit(3)"}),
        None, "DeadKernelError")  # nbgrader stops grading the notebook: all 0, with the reason
    add("endless", "0.2 loops forever", _answer(CH00, {**ALL_RIGHT}, prefix={"0.2": "while True:\n    pass"}),
        [1, 0, 1], "after the cell timeout of 45 s")
    add("escape", "writes and deletes files outside its folder", _answer(CH00, ALL_RIGHT, prefix={"0.1": ESCAPE}),
        None, "")
    add("cheat", "patches the visible checks, answers nothing", _answer(CH00, {}, prefix={"0.1": CHEAT}), [0, 0, 0],
        "Exercise 0.")
    add("cheat_reload", "patches importlib.reload and the checks, answers nothing (held for review)",
        _answer(CH00, {}, prefix={"0.1": CHEAT_RELOAD}), [0, 0, 0], "held for review, 0 points (the checks gave 3/3")
    nb = _answer(CH00, ALL_RIGHT)
    nb["cells"] = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") != "exercise_0_2_check"]
    add("deleted_check", "deleted the check cell of 0.2 (nbgrader puts it back and runs it)", nb, [1, 1, 1], "")
    nb = _answer(CH00, {**ALL_RIGHT, "0.2": "return 1"})
    nb["cells"] = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") != "exercise_0_2_check"]
    add("deleted_wrong", "0.2 wrong and its check cell deleted", nb, [1, 0, 1], "ExerciseError: Exercise 0.2:")
    nb = _answer(CH00, {})
    for c in nb["cells"]:
        if c["metadata"].get("nbgrader", {}).get("grade"):
            c["source"] = "pass"
    add("edited_check", "replaced the locked checks by `pass` (nbgrader restores them)", nb, [0, 0, 0],
        "NotImplementedError")
    add("not_json", "not JSON", b"{\"cells\": [", None, "not a readable notebook")
    add("not_notebook", "JSON but not a notebook", b'{"hello": 1}', None, "not a valid Jupyter notebook")
    add("empty_file", "an empty file", b"", None, "not a readable notebook")
    add("not_utf8", "JSON in Latin-1, not UTF-8", '{"cells": [], "note": "caf\u00e9"}'.encode("latin-1"), None,
        "not a readable notebook")
    add("garbage", "binary garbage", bytes(range(256)) * 4, None, "not a readable notebook")
    add("too_big", "a 21 MB file", b'{"cells": [], "x": "' + b" " * 21_000_000 + b'"}', None, "not a readable notebook")
    nb = _answer(CH00, ALL_RIGHT)
    nb["metadata"]["kernelspec"] = {"name": "ir", "display_name": "R", "language": "R"}
    add("r_kernel", "an R notebook under the chapter's name", nb, None, "not a Python notebook")
    nb = _answer(CH00, ALL_RIGHT)
    del nb["cells"][0]["cell_type"]
    add("broken_cell", "a cell without a cell_type", nb, None, "not a valid Jupyter notebook")
    # chapter 02 for a few: right, unanswered, one wrong
    nb02, _, ex02 = _student(CH02)
    right02 = {e.number: "right" for e in ex02}
    add("right0", "ch02 all right", _answer(CH02, right02), [1] * len(ex02), "correct", notebook=NB02)
    add("blank0", "ch02 unanswered", _answer(CH02, {}), [0] * len(ex02), "NotImplementedError", notebook=NB02)
    first = ex02[0].number
    add("wrong01_0", f"ch02 {first} raises", _answer(CH02, {**right02, first: "raise ValueError('x')"}),
        [0] + [1] * (len(ex02) - 1), "", notebook=NB02)
    return subs


def _write(folder: Path, subs) -> None:
    for (student, notebook), (_, content, _, _) in subs.items():
        d = folder / student
        d.mkdir(parents=True, exist_ok=True)
        data = content if isinstance(content, bytes) else (json.dumps(content, indent=1) + "\n").encode()
        (d / notebook).write_bytes(data)
    (folder / "extra_files").mkdir()
    (folder / "extra_files" / NB00).write_text(json.dumps(_answer(CH00, ALL_RIGHT)), encoding="utf-8")
    (folder / "extra_files" / "notes.txt").write_text("my notes", encoding="utf-8")
    (folder / "extra_files" / "scratch.ipynb").write_text("{}", encoding="utf-8")
    (folder / "only_other").mkdir()
    (folder / "only_other" / "homework.py").write_text("print(1)", encoding="utf-8")
    (folder / "only_ch02").mkdir()  # missing chapter 00
    (folder / "only_ch02" / NB02).write_text(json.dumps(_answer(CH02, {})), encoding="utf-8")
    (folder / "empty_folder").mkdir()  # handed in nothing
    (folder / "typo").mkdir()  # a misspelt name: ignored (noted), so chapter 00 is missing
    (folder / "renamed").mkdir()  # a browser's copy name: not graded, and the note says what to rename
    (folder / "renamed" / "00_bert_blueprint (1).ipynb").write_text(json.dumps(_answer(CH00, ALL_RIGHT)),
                                                                    encoding="utf-8")
    (folder / "typo" / "00_bert_blueprnt.ipynb").write_text(json.dumps(_answer(CH00, ALL_RIGHT)), encoding="utf-8")
    (folder / "linked").mkdir()  # a link, not a file: ignored (noted)
    (folder / "linked" / NB00).symlink_to(BOOK.path(CH00.notebook))
    (folder / "bad name!").mkdir()
    (folder / "bad name!" / NB00).write_text("{}", encoding="utf-8")
    (folder / "README.txt").write_text("collected on Monday", encoding="utf-8")


def _tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _repo_files() -> dict[str, str]:
    names = subprocess.run(["git", "ls-files", "-z"], cwd=BOOK.root, capture_output=True, check=True).stdout
    return {n: hashlib.sha256((BOOK.root / n).read_bytes()).hexdigest()
            for n in names.decode().split("\0") if n and (BOOK.root / n).is_file()}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("grading")
    subs = _submissions()
    folder = base / "submissions"
    _write(folder, subs)
    before, repo = _tree(folder), _repo_files()
    start = time.perf_counter()
    jobs = grade(BOOK, folder, base / "out", timeout=300, cell_timeout=45, jobs=3)
    seconds = time.perf_counter() - start
    return subs, jobs, base, before, repo, seconds


def test_forty_submissions_graded_as_their_answers_deserve(graded):
    subs, jobs, base, _, _, seconds = graded
    rows = read_gradebook(base / "out" / CSV_NAME)
    extra = {"extra_files": "right notebook plus notes.txt and scratch.ipynb", "only_ch02": "chapter 00 missing",
             "empty_folder": "nothing handed in", "typo": "misspelt notebook name",
             "linked": "a symlink instead of a file", "only_other": "no chapter notebook at all",
             "bad name!": "a folder name nbgrader cannot take", "renamed": "00_bert_blueprint (1).ipynb"}
    handed_in = len(subs) + len(extra)
    assert handed_in >= 40
    assert list(rows[0]) == ["student", "notebook", "exercise", "points", "max", "note"]
    by = {}
    for r in rows:
        by.setdefault((r["student"], r["notebook"]), []).append(r)
    table = []
    for key, (kind, _, points, note) in subs.items():
        got = by[key]
        table.append(f"| {kind} | {key[0]} | {sum(float(r['points']) for r in got):g}/"
                     f"{sum(float(r['max']) for r in got):g} | {'; '.join(sorted({r['note'][:100] for r in got}))} |")
    for student, kind in extra.items():
        got = by.get((student, NB00), [])
        total = f"{sum(float(r['points']) for r in got):g}/{sum(float(r['max']) for r in got):g}"
        table.append(f"| {kind} | {student} | " + (f"{total} | {got[0]['note']} |" if got else "- | no rows |"))
    print(f"\n{len(jobs)} notebooks ({handed_in} handed in) graded in {seconds:.1f} s\n" + "\n".join(table))
    for key, (kind, _, points, note) in subs.items():
        got = by[key]
        if points is not None:
            assert [float(r["points"]) for r in got] == points, (key, kind, got)
            assert all(float(r["max"]) == 1 for r in got)
            wrong = [r for r in got if float(r["points"]) == 0]
            assert all(note in r["note"] for r in wrong) if note and wrong else True, (key, got)
        else:
            assert note in got[0]["note"], (key, got)
    assert [float(r["points"]) for r in by[("extra_files", NB00)]] == [1, 1, 1]
    for student in ("only_ch02", "empty_folder", "typo", "linked"):
        assert {(r["points"], r["note"]) for r in by[(student, NB00)]} == {("0", "not submitted")}
    assert {r["note"] for r in by[("empty_folder", NB02)]} == {"not submitted"}
    assert {(r["points"], r["note"]) for r in by[("renamed", NB00)]} == {
        ("0", f"not submitted (the folder holds 00_bert_blueprint (1).ipynb: rename it to {NB00} and grade again)")}
    assert {r["points"] for r in by[("right0", NB00)]} == {"1"}  # right answers are never held for review


def test_missing_notebooks_score_zero_and_extra_files_are_noted(graded):
    subs, _, base, _, _, _ = graded
    rows = read_gradebook(base / "out" / CSV_NAME)
    missing = [r for r in rows if r["student"] == "right0" and r["notebook"] == NB00]
    assert missing and all(r["note"] == "correct" for r in missing)
    missing = [r for r in rows if r["student"] == "right1" and r["notebook"] == NB02]
    assert missing and {r["note"] for r in missing} == {"not submitted"} and {r["points"] for r in missing} == {"0"}
    assert {(r["points"], r["note"]) for r in rows if r["student"] == "only_other"} == {("0", "not submitted")}
    assert not [r for r in rows if r["student"] == "bad name!"]
    notes = (base / "out" / "notes.txt").read_text(encoding="utf-8")
    for what in ("extra_files/notes.txt", "extra_files/scratch.ipynb", "only_other/homework.py", "'bad name!'",
                 "README.txt", "typo/00_bert_blueprnt.ipynb", f"linked/{NB00}",
                 f"renamed/00_bert_blueprint (1).ipynb: not a chapter notebook of the course, ignored (rename it to "
                 f"{NB00} to grade it)", f"cheat_reload/{NB00}: held for review, 0 points: cell "):
        assert what in notes


def test_feedback_page_per_student_and_notebook_says_what_happened(graded):
    subs, _, base, _, _, _ = graded
    feedback = base / "out" / "feedback"
    for (student, notebook) in subs:
        assert (feedback / student / (Path(notebook).stem + ".html")).is_file()
    page = (feedback / "wrong02_0" / "00_bert_blueprint.html").read_text(encoding="utf-8")
    assert "ExerciseError" in page and "Exercise 0.2" in page and "Hint" in page  # nbgrader shows the check's error
    assert "not a readable notebook" in (feedback / "not_json" / "00_bert_blueprint.html").read_text(encoding="utf-8")
    assert "not submitted" in (feedback / "right1" / "02_dropout.html").read_text(encoding="utf-8")
    # nbgrader's page loads MathJax from a CDN; here it finds the copy in feedback/_mathjax/ (offline_mathjax)
    assert 'src="../_mathjax/MathJax.js?config=' in page and (feedback / "_mathjax" / "MathJax.js").is_file()
    assert re.findall(r'(?:src|href)="(https?:[^"]+)"', page) == []


def test_submissions_and_the_course_are_untouched(graded):
    subs, _, base, before, repo, _ = graded
    assert _tree(base / "submissions") == before
    assert _repo_files() == repo
    assert not (BOOK.root / "escaped.txt").exists() and not (base / "escaped.txt").exists()
    assert sorted(p.name for p in (base / "out").iterdir()) == sorted([CSV_NAME, "feedback", "notes.txt",
                                                                       ".minibert-output.json"])


def test_a_notebook_past_its_timeout_is_stopped_with_its_kernel_and_scores_zero(tmp_path):
    d = tmp_path / "subs" / "looper"
    d.mkdir(parents=True)
    (d / NB00).write_text(json.dumps(_answer(CH00, ALL_RIGHT, prefix={"0.1": "while True:\n    pass"})),
                          encoding="utf-8")
    start = time.perf_counter()
    jobs = grade(BOOK, tmp_path / "subs", tmp_path / "out", timeout=20, cell_timeout=600)
    assert time.perf_counter() - start < 120
    rows = read_gradebook(tmp_path / "out" / CSV_NAME)
    assert [r["points"] for r in rows] == ["0", "0", "0"] and all(r["note"].startswith("timed out") for r in rows)
    assert "Timed out" in (tmp_path / "out" / "feedback" / "looper" / "00_bert_blueprint.html").read_text()
    assert 20 <= jobs[0].seconds < 60
    time.sleep(2)  # the kernel is gone: no process carries the mark of a job whose scratch folder is removed
    # (other grading runs on the machine may hold live kernels; their scratch folders still exist)
    marked = [p for p in Path("/proc").glob("[0-9]*") if _orphan_mark(p)]
    assert marked == []


def _orphan_mark(proc: Path) -> bool:
    import tempfile

    try:
        marks = [v.split(b"=", 1)[1].decode() for v in (proc / "environ").read_bytes().split(b"\0")
                 if v.startswith(b"MINIBERT_GRADE_JOB=")]
    except OSError:
        return False
    return any(not (Path(tempfile.gettempdir()) / mark).exists() for mark in marks)


@pytest.mark.parametrize("where", ["inside", "repo", "notebooks"])
def test_output_folder_refusals(tmp_path, where):
    subs = tmp_path / "subs"
    (subs / "a").mkdir(parents=True)
    out = {"inside": subs / "grades", "repo": BOOK.root, "notebooks": BOOK.root / "notebooks" / "g"}[where]
    with pytest.raises(GradeError if where == "inside" else Exception, match="refusing"):
        grade(BOOK, subs, out)
    assert not (subs / "grades").exists() and not (BOOK.root / "notebooks" / "g").exists()


def test_command_reports_bad_folders(tmp_path, capsys):
    assert main(["--root", str(BOOK.root), "grade", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["--root", str(BOOK.root), "grade", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no student folders" in capsys.readouterr().err
    assert main(["--root", str(BOOK.root), "grade", str(tmp_path / "empty"), "--out", str(tmp_path / "o"),
                 "--jobs", "0"]) == 2
    assert not (tmp_path / "o").exists()


def test_hidden_test_re_runs_each_check_on_a_fresh_copy_of_the_check_module():
    from minibert.book.nbgrading import HIDDEN_BEGIN, HIDDEN_END, hidden_test

    hidden = hidden_test("from minibert.exercises import ch04\nch04.check_attention(attention)\nprint('x')")
    lines = hidden.split("\n")
    assert lines[0] == HIDDEN_BEGIN and lines[-1] == HIDDEN_END
    assert "_importlib.reload(_importlib.import_module('minibert.exercises.ch04')).check_attention(attention)" in lines
    assert hidden_test("print(1)") is None and hidden_test("def (") is None


@pytest.mark.parametrize("chapter", BOOK.chapters, ids=[c.stem for c in BOOK.chapters])
def test_every_exercise_gets_an_answer_cell_and_a_graded_check_with_hidden_tests(chapter):
    from minibert.book.nbgrading import HIDDEN_BEGIN, tagged_notebook

    tagged = tagged_notebook(BOOK, chapter)
    cells = tagged.nb["cells"]
    ids = [c["metadata"]["nbgrader"]["grade_id"] for c in cells if "nbgrader" in c.get("metadata", {})]
    assert len(ids) == len(set(ids)) and all(re.fullmatch(r"[A-Za-z0-9_]+", i) for i in ids)
    for e in tagged.exercises:
        check = cells[e.check_cell]
        assert check["metadata"]["nbgrader"]["points"] == 1 and check["metadata"]["nbgrader"]["locked"]
        assert HIDDEN_BEGIN in check["source"], f"{chapter.notebook}: Exercise {e.number}'s check has no hidden test"
        assert all(cells[i]["metadata"]["nbgrader"]["solution"] for i in e.solution_cells)
    teacher = json.loads(BOOK.path(chapter.notebook).read_text(encoding="utf-8"))
    assert not any("nbgrader" in c.get("metadata", {}) for c in teacher["cells"])  # the notebook itself is untouched


def test_stock_nbgrader_refuses_the_plain_notebook_and_takes_the_tagged_one():
    from minibert.book.nbgrading import Course, tagged_notebook, tools_on_path

    with Course() as course, tools_on_path():
        api = course.api()
        folder = course.root / "source" / "plain"
        folder.mkdir(parents=True)
        (folder / NB00).write_bytes(BOOK.path(CH00.notebook).read_bytes())
        result = api.generate_assignment("plain", force=True, create=True)
        assert not result["success"] and "Solution region detected in a non-solution cell" in result["log"]
        course.add_source(tagged_notebook(BOOK, CH00))
        result = api.generate_assignment(CH00.stem, force=True, create=True)
        assert result["success"], result["log"]
        released = json.loads((course.root / "release" / CH00.stem / NB00).read_text(encoding="utf-8"))
        assert sum("raise NotImplementedError" in "".join(c["source"]) for c in released["cells"]) == 3


def test_every_chapter_autogrades_the_teachers_solutions_to_full_marks(tmp_path):
    folder = tmp_path / "subs" / "teacher"
    folder.mkdir(parents=True)
    for chapter in BOOK.chapters:
        _, _, exercises = _student(chapter)
        nb = _answer(chapter, {e.number: "right" for e in exercises})
        (folder / Path(chapter.notebook).name).write_text(json.dumps(nb), encoding="utf-8")
    jobs = grade(BOOK, tmp_path / "subs", tmp_path / "out", timeout=600, cell_timeout=300, jobs=2)
    rows = read_gradebook(tmp_path / "out" / CSV_NAME)
    assert len(jobs) == len(BOOK.chapters)
    assert [r for r in rows if r["note"] != "correct"] == []
    assert len(rows) == sum(len(_student(c)[2]) for c in BOOK.chapters)
    print("\n" + "\n".join(f"{j.notebook}: {j.seconds:.1f} s" for j in jobs))


# Ways a student can fake a check from inside the notebook; each must be held for review.
CHEATS = [
    CHEAT, CHEAT_RELOAD,
    "from importlib import reload",
    "import sys\nsys.modules['minibert.exercises.ch00'] = None",
    "import torch\ntorch.allclose = lambda *a, **k: True",
    "torch.Tensor.__eq__ = lambda a, b: True",
    "F.layer_norm = lambda *a, **k: None",
    "get_ipython().input_transformers_cleanup.append(lambda lines: [])",
    "open(ch00.__file__, 'w').write('def check_miniature(f): pass')",
    "import pathlib\npathlib.Path('../code/minibert/exercises/ch00.py').write_text('')",
    "vars(ch00)['check_miniature'] = print",
    "ch00.__dict__.update(check_miniature=print)",
    "setattr(ch00, 'check_miniature', print)",
    "exec('import importlib')",
    "__import__('importlib').reload = print",
    "class Anything:\n    def __eq__(self, other):\n        return True\n\ndef heads_for(c, d):\n    return Anything()",
    "!sed -i 's/raise/pass/' ../code/minibert/exercises/__init__.py",
    "%run cheat.py",
    "import unittest.mock",
    "import builtins\nbuiltins.print = None",
    "globals()['ch00'] = None",
    "[ch00][0].check_miniature = print",
    "import sys\nS = sys\nS.modules['importlib'].reload = print",
    "Anything = type('Anything', (), {'__eq__': lambda self, other: True})",
    "import inspect\ninspect.getsourcefile(ch00)",
]


@pytest.mark.parametrize("code", CHEATS, ids=range(len(CHEATS)))
def test_code_that_could_fake_a_check_is_named(code):
    from minibert.book.grade import tampering

    assert tampering(code, {"torch", "F", "ch00", "BertConfig"}), code


def test_no_answer_the_course_expects_is_held_for_review():
    """Every chapter with the teacher's answers, and with each hand-written wrong answer: nothing flagged."""
    from minibert.book.grade import suspicious_code
    from minibert.book.nbgrading import tagged_notebook

    for chapter in BOOK.chapters:
        handed_out = tagged_notebook(BOOK, chapter).nb
        exercises = _student(chapter)[2]
        notebooks = [_answer(chapter, {e.number: "right" for e in exercises}), _answer(chapter, {})]
        wrong = [(e.number, body) for e in exercises for body in WRONG_ANSWERS.get(e.number, [])]
        # A wrong answer that reloads a module or runs a subprocess to reach a forbidden function (7.2, 7.4) is a
        # shortcut the grader should hold for review; every other wrong answer is an honest mistake, graded not held.
        shortcuts = [(n, body) for n, body in wrong if "importlib" in body or "subprocess" in body]
        notebooks += [_answer(chapter, {n: body}) for n, body in wrong if (n, body) not in shortcuts]
        for nb in notebooks:
            assert suspicious_code(nb, handed_out) == [], chapter.notebook
        for n, body in shortcuts:
            assert suspicious_code(_answer(chapter, {n: body}), handed_out), (chapter.notebook, n, body)
    honest = ["%time x = 1", "fields = vars(BertConfig())", "fields = BertConfig().__dict__", "t = type(x).__name__",
              "import sys\nbig = sys.maxsize", "import math, copy, dataclasses",
              "n = sum(1 for m in BertConfig.__mro__)", "k = len(list(torch.nn.Linear(2, 2).modules()))"]
    for code in honest:
        assert suspicious_code(_answer(CH00, {}, prefix={"0.1": code}), tagged_notebook(BOOK, CH00).nb) == [], code


CDN_PAGE = ('<head><script src="https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.7/latest.js?config=TeX-AMS_CHTML-full,Safe">'
            ' </script></head><body>$x^2$</body>')


def test_feedback_pages_load_the_local_mathjax_with_the_cdn_as_fallback(tmp_path):
    from types import SimpleNamespace

    from minibert.book.grade import offline_mathjax

    jobs = [SimpleNamespace(feedback=CDN_PAGE), SimpleNamespace(feedback="<p>no maths, no MathJax</p>"),
            SimpleNamespace(feedback=None)]
    assert offline_mathjax(BOOK, tmp_path / "feedback", jobs) == []
    src = re.search(r'<script src="([^"]+)" onerror="([^"]+)">', jobs[0].feedback)
    assert src[1] == "../_mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe"
    assert "s.src='https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.7/latest.js?config=TeX-AMS_CHTML-full,Safe'" in src[2]
    script = (tmp_path / "feedback" / "student" / src[1].split("?")[0]).resolve()  # as seen from feedback/<student>/
    assert script == (tmp_path / "feedback" / "_mathjax" / "MathJax.js") and script.is_file()
    for name in src[1].split("config=")[1].split(","):  # each config file MathJax will ask for is there
        assert (script.parent / "config" / f"{name}.js").is_file(), name
    assert jobs[1].feedback == "<p>no maths, no MathJax</p>" and jobs[2].feedback is None
    assert not STUDENT_ID.match("_mathjax")  # no student's feedback folder can be this one


def test_feedback_keeps_the_cdn_and_says_so_without_node_modules(tmp_path, monkeypatch):
    from types import SimpleNamespace

    import minibert.book.render as render
    from minibert.book.grade import offline_mathjax
    from minibert.book.project import BookError

    def missing(*args, **kwargs):
        raise BookError("the book's offline scripts are missing: node_modules/mathjax does not exist")

    monkeypatch.setattr(render, "copy_assets", missing)
    jobs = [SimpleNamespace(feedback=CDN_PAGE)]
    notes = offline_mathjax(BOOK, tmp_path / "feedback", jobs)
    assert len(notes) == 1 and "MathJax from the internet" in notes[0] and "node_modules/mathjax" in notes[0]
    assert jobs[0].feedback == CDN_PAGE and not (tmp_path / "feedback").exists()
