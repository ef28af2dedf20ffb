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

A secret line is also searched for *under other names*: its shape (`line_shape`) is the value it returns,
assigns or tests with every variable renamed in order of appearance (`_0`, `_1`, ...; attribute names, builtins
and constants kept), so `layer.output(layer.intermediate(h), h)` in a later chapter is Exercise 5.2's
`self.output(self.intermediate(attention_output), attention_output)`. A shape needs two operations (calls,
indexing, comparisons, arithmetic) and one that is not arithmetic: plain arithmetic on variables is a formula a
chapter teaches in its text before the exercise (chapter 03's 2CF + F + C, chapter 07's table sizes), where no
code comparison can see it. A shape already shown (as above) is no secret. Lines are compared one by one, so a
statement spread over several lines is found only line by line; the same computation written another way
(a module instead of its formula, a name for a sub-expression) is not found.
"""

from __future__ import annotations

import ast
import builtins
import functools
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
    shape: str = ""  # its value with every variable renamed (`line_shape`), "" when it is too simple for that


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


# Operations an expression's shape counts: a shape with fewer than SHAPE_OPS of them (`f(x)`, `a + b`) is part of
# too many programs to be anyone's answer.
_OPERATIONS = (ast.Call, ast.BinOp, ast.BoolOp, ast.Compare, ast.Subscript, ast.IfExp, ast.ListComp, ast.SetComp,
               ast.DictComp, ast.GeneratorExp)
SHAPE_OPS = 2
MAX_LINE = 500  # longer lines are data (a figure's base64, a long output), not code anyone writes
_BUILTINS = frozenset(dir(builtins))


def _dump(node, names: dict[str, str]) -> str:
    """`ast.dump` of `node` with every variable (a Name or argument that is not a builtin: `hidden_states`,
    `self`, `layer`) renamed `_0`, `_1`, ... in the order it first appears, so a shape keeps which operands are
    the same variable; attribute names (`.output`, `.argmax`), builtins, constants and operators stay."""
    if isinstance(node, ast.Name):
        return f"Name({node.id if node.id in _BUILTINS else names.setdefault(node.id, f'_{len(names)}')})"
    if isinstance(node, ast.arg):
        return f"arg({names.setdefault(node.arg, f'_{len(names)}')})"
    if isinstance(node, ast.AST):
        return f"{type(node).__name__}({', '.join(_dump(getattr(node, f, None), names) for f in node._fields)})"
    if isinstance(node, list):
        return f"[{', '.join(_dump(v, names) for v in node)}]"
    return repr(node)


def _shape(node: ast.AST) -> tuple[str, int]:
    return _dump(node, {}), sum(isinstance(n, _OPERATIONS) for n in ast.walk(node))


def _parse_line(code: str):
    code = code.strip()
    for attempt in (code, code + "\n    pass", code.removeprefix("elif ").removeprefix("else") + "\n    pass"):
        try:
            return ast.parse(attempt)
        except (SyntaxError, ValueError):
            continue
    return None


def line_shape(code: str) -> str:
    """The shape of a line's computation, with every variable renamed (`_dump`): the value a statement returns,
    assigns, tests or loops over (`return self.output(self.intermediate(x), x)` and
    `y = layer.output(layer.intermediate(h), h)` have one shape); "" when the line does not parse on its own or
    its value holds fewer than SHAPE_OPS operations."""
    tree = _parse_line(code)
    if tree is None or len(tree.body) != 1:
        return ""
    stmt = tree.body[0]
    value = getattr(stmt, "value", None) or getattr(stmt, "test", None) or getattr(stmt, "iter", None)
    if not isinstance(value, ast.expr):
        return ""
    shape, ops = _shape(value)
    arithmetic = all(isinstance(n, (ast.BinOp, ast.UnaryOp, ast.Name, ast.Constant, ast.operator, ast.unaryop,
                                    ast.expr_context)) for n in ast.walk(value))
    return "" if arithmetic or ops < SHAPE_OPS else shape


def shapes(text: str) -> set[str]:
    """The shape of every expression of every line of `text` that parses on its own (a haystack's shapes)."""
    return set().union(*map(_line_shapes, code_lines(text)))


@functools.lru_cache(maxsize=None)
def _line_shapes(line: str) -> frozenset[str]:
    tree = _parse_line(line) if line.strip() and len(line) <= MAX_LINE else None
    if tree is None:
        return frozenset()
    return frozenset(_dump(node, {}) for node in ast.walk(tree)
                     if isinstance(node, ast.expr) and not isinstance(node, (ast.Name, ast.Constant)))


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
    earlier_shapes: set[str] = set()
    for chapter in book.chapters:
        nb = json.loads(book.path(chapter.notebook).read_text(encoding="utf-8"))
        where = chapter.notebook
        for e in find_exercises(nb, where):
            if not e.solution_cells:
                continue
            shown = [_shown(nb, where, e.solution_cells[0])]
            if e.check_cell is not None:
                shown.append(_source(nb["cells"][e.check_cell]))
            inside: list[str] = []
            for i in e.solution_cells:
                src = _source(nb["cells"][i])
                lines, code = src.split("\n"), code_lines(src)
                outside = list(range(len(lines)))
                for r in regions(src, f"{where}, cell {i + 1}"):
                    inside += [(lines[k].strip(), code[k]) for k in range(r.begin + 1, r.end)]
                    outside = [k for k in outside if not r.begin <= k <= r.end]
                shown.append("\n".join(lines[k] for k in outside))
            seen = [earlier] + [squeeze(text) for text in shown]
            seen_shapes = earlier_shapes.union(*(shapes(text) for text in shown))
            for line, code in dict.fromkeys(inside):
                key = squeeze(code)
                if (len(" ".join(code.split())) >= MIN_CHARS and computes(code)
                        and not any(key in s for s in seen)):
                    shape = line_shape(code)
                    found.append(Secret(chapter.notebook, e.number, line, key,
                                        "" if shape in seen_shapes else shape))
        earlier += "\n" + squeeze(_shown(nb, where))
        earlier_shapes |= shapes(_shown(nb, where))
    return found


def hits(found: list[Secret], haystacks: dict[str, str]) -> list[str]:
    """'place: Exercise N.M's line' for every secret line found in a haystack (name -> text)."""
    out = []
    for name, text in haystacks.items():
        squeezed, shaped = squeeze(text), None
        for s in found:
            if s.key in squeezed:
                out.append(f"{name}: Exercise {s.exercise} ({s.notebook}): {s.line!r}")
            elif s.shape:
                shaped = shapes(text) if shaped is None else shaped
                if s.shape in shaped:
                    out.append(f"{name}: Exercise {s.exercise} ({s.notebook}): {s.line!r}, under other names")
    return out


def notebook_cells(name: str, nb: dict) -> dict[str, str]:
    """A notebook as haystacks, one per cell (source, outputs and metadata; 0-based cell index), plus its metadata."""
    out = {f"{name}, cell {i}": notebook_text(cell) for i, cell in enumerate(nb["cells"])}
    out[f"{name}, metadata"] = notebook_text(nb.get("metadata", {}))
    return out
