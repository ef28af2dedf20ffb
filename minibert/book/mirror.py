"""Mirror `#| export` cells from the notebooks into the package (DESIGN.md §3).

A cell whose first line is `#| export` is copied verbatim (minus that line) into its chapter's
module; `#| export NAME` sends it to the chapter's extra module `minibert/NAME.py`. Each generated
file starts with a header that names its source and records a hash of its body, so a hand edit is
told apart from a notebook change. Everything is generated in memory and validated first; only
then are files written, each atomically. The output depends only on the notebooks and book.toml.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import json
import os
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .project import BOOK_FILE, PACKAGE, Book, BookError, Chapter

DIRECTIVE = "#| export"
INIT = f"{PACKAGE}/__init__.py"
HASH_PREFIX = "# content-hash: "


@dataclass(frozen=True)
class ExportedCell:
    notebook: str
    cell: int  # 1-based, counting every cell as JupyterLab lists them
    target: str  # module path
    source: str  # without the directive line, LF line endings, no trailing blank lines


def read_notebook(book: Book, chapter: Chapter) -> dict:
    path = book.path(chapter.notebook)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise BookError(f"{chapter.notebook}: notebook not found (listed in {BOOK_FILE})") from None
    except UnicodeDecodeError as exc:
        raise BookError(f"{chapter.notebook}: not UTF-8 text ({exc})") from None
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BookError(f"{chapter.notebook}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                        f"nothing was written") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise BookError(f"{chapter.notebook}: not a Jupyter notebook (no 'cells' list); nothing was written")
    return nb


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    text = "".join(src) if isinstance(src, list) else str(src)
    return text.replace("\r\n", "\n").replace("\r", "\n")


def exported_cells(book: Book, chapter: Chapter) -> list[ExportedCell]:
    """The chapter's `#| export` cells, checked to parse, in notebook order."""
    nb = read_notebook(book, chapter)
    targets = {Path(m).stem: m for m in chapter.modules}
    cells = []
    for index, cell in enumerate(nb["cells"], start=1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        text = _source(cell)
        first, _, body = text.partition("\n")
        first = first.rstrip()
        if not first.startswith(DIRECTIVE):
            continue
        where = f"{chapter.notebook}, cell {index}"
        name = first[len(DIRECTIVE):].strip()
        if first[len(DIRECTIVE):][:1] not in ("", " "):
            raise BookError(f"{where}: unknown directive {first!r}; write '#| export' or '#| export NAME'")
        if name and name not in targets:
            raise BookError(f"{where}: '#| export {name}' names no module of this chapter; "
                            f"{BOOK_FILE} gives it {sorted(targets)}")
        body = body.rstrip()
        try:
            ast.parse(body, filename=where)
        except SyntaxError as exc:
            raise BookError(f"{where}: exported cell does not parse: {exc.msg} (line {exc.lineno} of the cell "
                            f"after the directive); nothing was written") from None
        cells.append(ExportedCell(chapter.notebook, index, targets[name] if name else chapter.module, body))
    return cells


def public_names(source: str) -> list[str]:
    """Top-level names a cell defines that do not start with an underscore."""
    names = []
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return [n for n in dict.fromkeys(names) if not n.startswith("_")]


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()[:16]


def _with_header(header: list[str], body: str) -> str:
    return "\n".join(header) + "\n" + HASH_PREFIX + _digest(body) + "\n" + body


def render_module(module: str, chapter: Chapter, cells: list[ExportedCell]) -> tuple[str, list[str]]:
    names = [n for c in cells for n in public_names(c.source)]
    parts = [f'"""{chapter.title}: the code of {chapter.notebook}."""', ""]
    parts.append("__all__ = [" + ", ".join(repr(n) for n in names) + "]" if names else "__all__: list[str] = []")
    for c in cells:
        parts += ["", "", f"# %% {c.notebook}, cell {c.cell}", c.source]
    body = "\n".join(parts) + "\n"
    header = [f"# AUTOGENERATED by `minibert sync` from {chapter.notebook} - do not edit by hand.",
              "# Edit the notebook, then run `minibert sync` (or `make sync`); `minibert check` verifies this file."]
    return _with_header(header, body), names


def render_init(book: Book, exports: dict[str, str]) -> str:
    version = tomllib.loads(book.path("pyproject.toml").read_text(encoding="utf-8"))["project"]["version"] \
        if book.path("pyproject.toml").is_file() else "0"
    lines = [
        f'"""{book.title}',
        "",
        f"{book.description}",
        "",
        "Public names are imported lazily from the chapter module that defines them, so the `minibert`",
        "command starts fast and works without importing torch.",
        '"""',
        "",
        "from importlib import import_module as _import_module",
        "",
        f"__version__ = {version!r}",
        "",
        "# name -> module that defines it, in book order",
        "_EXPORTS = {",
        *[f"    {name!r}: {module!r}," for name, module in exports.items()],
        "}",
        "__all__ = list(_EXPORTS)",
        "",
        "",
        "def __getattr__(name: str):",
        "    if name not in _EXPORTS:",
        "        raise AttributeError(f\"module 'minibert' has no attribute {name!r}\")",
        "    value = getattr(_import_module(_EXPORTS[name]), name)",
        "    globals()[name] = value  # later lookups skip __getattr__",
        "    return value",
        "",
        "",
        "def __dir__() -> list[str]:",
        "    return sorted(set(globals()) | set(__all__))",
    ]
    header = [f"# AUTOGENERATED by `minibert sync` from {BOOK_FILE} and the notebooks' exports - do not edit by hand.",
              "# Run `minibert sync` (or `make sync`) to regenerate; `minibert check` verifies this file."]
    return _with_header(header, "\n".join(lines) + "\n")


def generate(book: Book) -> dict[str, str]:
    """Every generated file's path -> its exact text. Raises BookError before anything is written."""
    out: dict[str, str] = {}
    exports: dict[str, str] = {}
    where: dict[str, str] = {}
    for chapter in book.chapters:
        cells = exported_cells(book, chapter)
        for module in chapter.modules:
            mine = [c for c in cells if c.target == module]
            text, names = render_module(module, chapter, mine)
            out[module] = text
            dotted = module[:-3].replace("/", ".")
            for name in names:
                if name in exports:
                    raise BookError(f"{chapter.notebook}: exports {name!r}, which {where[name]} already exports; "
                                    f"public names must be unique across the package")
                exports[name] = dotted
                where[name] = next(c.notebook for c in mine if name in public_names(c.source))
    out[INIT] = render_init(book, exports)
    return out


def hand_edited(text: str) -> bool:
    """True if a generated file's body no longer matches the hash in its header (or has no header)."""
    head, sep, body = text.partition("\n" + HASH_PREFIX)
    if not sep or not head.startswith("# AUTOGENERATED"):
        return True
    digest, _, body = body.partition("\n")
    return digest.strip() != _digest(body)


@dataclass(frozen=True)
class Drift:
    path: str
    reason: str  # "missing", "edited by hand", "out of date"
    diff: str


def drifted(book: Book) -> list[Drift]:
    problems = []
    for path, want in generate(book).items():
        file = book.path(path)
        if not file.is_file():
            problems.append(Drift(path, "missing", ""))
            continue
        have = file.read_bytes().decode("utf-8", errors="replace")
        if have == want:
            continue
        reason = "edited by hand" if hand_edited(have) else "out of date with its notebook"
        diff = "".join(list(difflib.unified_diff(want.splitlines(True), have.splitlines(True),
                                                 f"{path} (from the notebooks)", f"{path} (on disk)", n=1))[:24])
        problems.append(Drift(path, reason, diff))
    return problems


def _write_atomic(path: Path, text: str) -> None:
    data = text.encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sync(book: Book, *, force: bool = False) -> list[str]:
    """Regenerate the package. Returns the paths written (unchanged files are not touched)."""
    files = generate(book)
    changed = {}
    refused = []
    for path, text in files.items():
        file = book.path(path)
        if file.is_file():
            have = file.read_bytes().decode("utf-8", errors="replace")
            if have == text:
                continue
            if hand_edited(have) and not force:
                refused.append(path)
        changed[path] = text
    if refused:
        raise BookError("refusing to overwrite generated file(s) edited by hand: " + ", ".join(refused) +
                        ". Move your change into the notebook, or run `minibert sync --force` to discard it. "
                        "Nothing was written.")
    for path, text in changed.items():
        _write_atomic(book.path(path), text)
    return list(changed)
