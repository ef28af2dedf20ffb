"""Read and validate book.toml: the course's chapters and the module each one writes."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

BOOK_FILE = "book.toml"
PACKAGE = "minibert"
BOOK_KEYS = {"title", "authors", "language", "description"}
CHAPTER_KEYS = {"notebook", "title", "module", "extra_modules"}
REQUIRED_CHAPTER_KEYS = ("notebook", "title", "module")
# Package files that are hand-written (or generated from book.toml itself): no chapter may write them.
RESERVED_MODULES = {"__init__", "__main__", "book", "exercises", "corpora", "safeio"}
_IDENT = re.compile(r"[a-z_][a-z0-9_]*\Z")
_NUMBER = re.compile(r"(\d\d)_")  # notebooks/NN_name.ipynb: chapter NN


class BookError(Exception):
    """book.toml, a notebook or a generated module is not as the tooling needs it."""


@dataclass(frozen=True)
class Chapter:
    number: int  # the notebook's NN_ prefix (its position in book.toml when it has none)
    notebook: str  # repository-relative, forward slashes
    title: str
    module: str  # repository-relative path of the main module, e.g. "minibert/config.py"
    extra_modules: tuple[str, ...] = ()

    @property
    def modules(self) -> tuple[str, ...]:
        return (self.module, *self.extra_modules)

    @property
    def stem(self) -> str:
        return Path(self.notebook).stem


@dataclass(frozen=True)
class Book:
    root: Path
    title: str
    authors: tuple[str, ...]
    language: str
    description: str
    chapters: tuple[Chapter, ...] = field(default_factory=tuple)

    def path(self, relative: str) -> Path:
        return self.root / relative


def find_root(start: Path | None = None) -> Path:
    """The nearest folder at or above `start` that holds book.toml."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / BOOK_FILE).is_file():
            return folder
    raise BookError(f"no {BOOK_FILE} found in {here} or any folder above it; run minibert inside the course repository")


def _module_path(root: Path, value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise BookError(f"{where}: module must be a path such as 'minibert/config.py', got {value!r}")
    rel = value.replace("\\", "/")
    resolved = (root / rel).resolve()
    package = (root / PACKAGE).resolve()
    if resolved.parent != package:
        raise BookError(f"{where}: module {value!r} is outside {PACKAGE}/; chapters write modules directly in "
                        f"{PACKAGE}/, such as '{PACKAGE}/config.py'")
    if resolved.suffix != ".py" or not _IDENT.match(resolved.stem):
        raise BookError(f"{where}: module {value!r} must be a lower-case Python file name such as "
                        f"'{PACKAGE}/config.py'")
    if resolved.stem in RESERVED_MODULES:
        raise BookError(f"{where}: module {value!r} is reserved for hand-written code; pick another name")
    return f"{PACKAGE}/{resolved.name}"


def _string(entry: dict, key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise BookError(f"{where}: '{key}' must be a non-empty string, got {value!r}")
    return value


def load_book(root: Path | None = None) -> Book:
    """Parse and validate book.toml; every problem is a BookError naming the entry."""
    root = find_root(root) if root is None or not (Path(root) / BOOK_FILE).is_file() else Path(root).resolve()
    path = root / BOOK_FILE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise BookError(f"{BOOK_FILE} is not valid TOML: {exc}") from None

    unknown = set(data) - {"book", "chapters"}
    if unknown:
        raise BookError(f"{BOOK_FILE}: unknown top-level key(s) {sorted(unknown)}; expected [book] and [[chapters]]")
    meta = data.get("book")
    if not isinstance(meta, dict):
        raise BookError(f"{BOOK_FILE}: missing [book] table with {sorted(BOOK_KEYS)}")
    unknown = set(meta) - BOOK_KEYS
    if unknown:
        raise BookError(f"{BOOK_FILE} [book]: unknown key(s) {sorted(unknown)}; allowed: {sorted(BOOK_KEYS)}")
    for key in ("title", "language", "description"):
        _string(meta, key, f"{BOOK_FILE} [book]")
    authors = meta.get("authors")
    if not isinstance(authors, list) or not authors or not all(isinstance(a, str) and a for a in authors):
        raise BookError(f"{BOOK_FILE} [book]: 'authors' must be a non-empty list of names, got {authors!r}")

    entries = data.get("chapters")
    if not isinstance(entries, list) or not entries:
        raise BookError(f"{BOOK_FILE}: no [[chapters]] entries")
    chapters: list[Chapter] = []
    owner: dict[str, str] = {}  # module -> where it was claimed
    seen_notebooks: dict[str, str] = {}
    for i, entry in enumerate(entries):
        where = f"{BOOK_FILE} chapter {i} ({entry.get('notebook', '?')})" if isinstance(entry, dict) else \
            f"{BOOK_FILE} chapter {i}"
        if not isinstance(entry, dict):
            raise BookError(f"{where}: must be a table with {list(REQUIRED_CHAPTER_KEYS)}")
        unknown = set(entry) - CHAPTER_KEYS
        if unknown:
            raise BookError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(CHAPTER_KEYS)}")
        for key in REQUIRED_CHAPTER_KEYS:
            if key not in entry:
                raise BookError(f"{where}: missing '{key}'")
        notebook = _string(entry, "notebook", where).replace("\\", "/")
        nb_path = (root / notebook).resolve()
        if root not in nb_path.parents:
            raise BookError(f"{where}: notebook {notebook!r} is outside the repository")
        if nb_path.suffix != ".ipynb":
            raise BookError(f"{where}: notebook {notebook!r} is not an .ipynb file")
        if not nb_path.is_file():
            raise BookError(f"{where}: notebook {notebook!r} does not exist")
        notebook = nb_path.relative_to(root).as_posix()
        if notebook in seen_notebooks:
            raise BookError(f"{where}: notebook {notebook!r} is already listed as {seen_notebooks[notebook]}")
        seen_notebooks[notebook] = f"chapter {i}"
        title = _string(entry, "title", where)
        extra = entry.get("extra_modules", [])
        if not isinstance(extra, list):
            raise BookError(f"{where}: 'extra_modules' must be a list of paths, got {extra!r}")
        modules = [_module_path(root, m, where) for m in [entry["module"], *extra]]
        for module in modules:
            if module in owner:
                raise BookError(f"{where}: module {module!r} is already written by {owner[module]}; "
                                f"each module belongs to one chapter")
            owner[module] = f"chapter {i} ({notebook})"
        prefix = _NUMBER.match(Path(notebook).name)
        number = int(prefix.group(1)) if prefix else i
        if chapters and number <= chapters[-1].number:
            raise BookError(f"{where}: chapter number {number:02d} (from the notebook's name) does not follow "
                            f"{chapters[-1].number:02d} ({chapters[-1].notebook}); list chapters in increasing order")
        chapters.append(Chapter(number, notebook, title, modules[0], tuple(modules[1:])))

    return Book(root, meta["title"], tuple(authors), meta["language"], meta["description"], tuple(chapters))
