"""What counts as an exercise's answer, and where it must not be found (the student notebooks, the class edition
of the book, the classroom bundle).

For each exercise, its *secret* lines are the lines inside its solution region(s) in the teacher's notebook,
compared as code: the comment taken off and all white space removed (`x = f(y)  # why` and `x=f(y)` are one
line), so a copy that differs only in spacing or comments, or that sits inside a longer line
(`return f(a), probs`), is found too. A line is left out when it is short (under 12 characters once runs of
white space are one space) or when a student has already seen it by the time the exercise is asked:

- anywhere outside the solution regions of the earlier chapters' teacher notebooks (sources, and the outputs a
  student version keeps), or
- in this chapter's cells before the exercise's first solution cell (solution regions and the outputs of exercise
  and check cells left out), in the exercise cells' own lines outside the region (the student's starting code),
  or in the check cell's source.

So `return hidden_states` that chapter 01 already wrote is no answer in chapter 05, while the loop that chapter
05's exercise asks for is, wherever it appears: in a later `#| export` cell, a later chapter, an output, a page
of the book or a file of the bundle. The haystacks are searched with all white space removed as well.
"""

from __future__ import annotations

import ast
import io
import json
import tokenize
from dataclasses import dataclass

from minibert.book.student import _source, find_exercises, regions

MIN_CHARS = 12


@dataclass(frozen=True)
class Secret:
    notebook: str
    exercise: str
    line: str  # as the teacher wrote it, stripped
    key: str  # the code without its comment and without white space


def squeeze(text: str) -> str:
    """Text with all white space removed: the form every search compares."""
    return "".join(text.split())


def code_lines(source: str) -> list[str]:
    """A cell's lines with their comments cut off (by Python's tokenizer; as written when the cell is not Python)."""
    lines = source.split("\n")
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                row, col = tok.start
                lines[row - 1] = lines[row - 1][:col]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return source.split("\n")
    return lines


# What computes: a line with none of these only moves names around (`return hidden_states`, `T = x.shape[1]`,
# `for layer in self.layer:`); such a line is part of many programs and says nothing of an answer by itself.
_COMPUTES = (ast.Call, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp, ast.Lambda, ast.ListComp,
             ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.Slice, ast.AugAssign, ast.JoinedStr)


def computes(code: str) -> bool:
    """Whether a line (comment already cut off) computes something; a line that is not a whole statement (part of
    a longer expression) counts as computing."""
    code = code.strip()
    for attempt in (code, code + "\n    pass", code.removeprefix("elif ").removeprefix("else") + "\n    pass"):
        try:
            tree = ast.parse(attempt)
        except SyntaxError:
            continue
        return any(isinstance(node, _COMPUTES) for node in ast.walk(tree))
    return True


def _strings(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return ["".join(node)] if node and all(isinstance(v, str) for v in node) else [s for v in node for s in _strings(v)]
    return []


def notebook_text(nb: dict) -> str:
    """Every string of a notebook (sources, outputs, metadata), one per line."""
    return "\n".join(_strings(nb))


def _shown(nb: dict, where: str, upto: int | None = None) -> str:
    """What a student sees of a teacher notebook (cells before `upto`): no solution region, no output of an
    exercise or check cell."""
    exercises = find_exercises(nb, where)
    hidden = {i for e in exercises for i in e.solution_cells}
    cleared = hidden | {e.check_cell for e in exercises if e.check_cell is not None}
    parts = []
    for i, cell in enumerate(nb["cells"][:upto]):
        src = _source(cell)
        if i in hidden:
            lines = src.split("\n")
            for r in regions(src, where):
                lines[r.begin:r.end + 1] = [""] * (r.end - r.begin + 1)
            src = "\n".join(lines)
        parts.append(src)
        if i not in cleared:
            parts += _strings(cell.get("outputs", []))
    return "\n".join(parts)


def secrets(book) -> list[Secret]:
    """Every exercise's secret lines (see the module's docstring), in book order."""
    found: list[Secret] = []
    earlier = ""
    for chapter in book.chapters:
        nb = json.loads(book.path(chapter.notebook).read_text(encoding="utf-8"))
        where = chapter.notebook
        for e in find_exercises(nb, where):
            if not e.solution_cells:
                continue
            seen = [earlier, squeeze(_shown(nb, where, e.solution_cells[0]))]
            if e.check_cell is not None:
                seen.append(squeeze(_source(nb["cells"][e.check_cell])))
            inside: list[str] = []
            for i in e.solution_cells:
                src = _source(nb["cells"][i])
                lines, code = src.split("\n"), code_lines(src)
                outside = list(range(len(lines)))
                for r in regions(src, f"{where}, cell {i + 1}"):
                    inside += [(lines[k].strip(), code[k]) for k in range(r.begin + 1, r.end)]
                    outside = [k for k in outside if not r.begin <= k <= r.end]
                seen.append(squeeze("\n".join(lines[k] for k in outside)))
            for line, code in dict.fromkeys(inside):
                key = squeeze(code)
                if (len(" ".join(code.split())) >= MIN_CHARS and computes(code)
                        and not any(key in s for s in seen)):
                    found.append(Secret(chapter.notebook, e.number, line, key))
        earlier += "\n" + squeeze(_shown(nb, where))
    return found


def hits(found: list[Secret], haystacks: dict[str, str]) -> list[str]:
    """'place: Exercise N.M's line' for every secret line found in a haystack (name -> text)."""
    squeezed = {name: squeeze(text) for name, text in haystacks.items()}
    return [f"{name}: Exercise {s.exercise} ({s.notebook}): {s.line!r}"
            for name, text in squeezed.items() for s in found if s.key in text]


def notebook_cells(name: str, nb: dict) -> dict[str, str]:
    """A notebook as haystacks, one per cell (source, outputs and metadata; 0-based cell index), plus its metadata."""
    out = {f"{name}, cell {i}": notebook_text(cell) for i, cell in enumerate(nb["cells"])}
    out[f"{name}, metadata"] = notebook_text(nb.get("metadata", {}))
    return out
