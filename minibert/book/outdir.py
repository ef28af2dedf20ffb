"""Output folders that never lose work: the one helper every builder writes through.

A builder (`minibert book`, `student`, `slides`, and any later one) writes only into

- a folder that does not exist yet, or is empty, or
- a folder it wrote itself before: it holds the marker file `.minibert-output.json`, which names the
  builder and lists every file the builder wrote, and nothing else.

It refuses `/`, the home folder, the repository root, `notebooks/`, `minibert/`, `.git/` (and anything inside
the last three), every folder that holds a chapter notebook, a path that is a file, and any folder holding a
file the builder did not write, naming the folder. The new output is built in a temporary sibling folder and
swapped in only when the build succeeded, so a failed rebuild leaves the previous output as it was: never
half a book.

    with output_folder(book, out, "book") as stage:
        ...write every file under stage...
    # here `out` holds exactly what was written into `stage`, plus the marker
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from .project import Book, BookError

MARKER = ".minibert-output.json"
_MARKER_MAX_BYTES = 16_000_000  # the list of files of a slide folder with MathJax is about 100 kB


class OutputError(BookError):
    """An output folder the builder must not write into."""


def _files(folder: Path) -> list[str]:
    """Every file (and link) under folder, relative, with forward slashes, sorted; empty folders are not listed."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        for name in filenames + [d for d in dirnames if (here / d).is_symlink()]:
            found.append((here / name).relative_to(folder).as_posix())
    return sorted(found)


def _read_marker(folder: Path) -> dict | None:
    from minibert.safeio import read_json_file

    marker = folder / MARKER
    if not marker.exists() and not marker.is_symlink():
        return None
    try:
        data = read_json_file(marker, what="output marker", max_bytes=_MARKER_MAX_BYTES)
    except (OSError, ValueError) as exc:
        raise OutputError(f"refusing to write into {folder}: its {MARKER} cannot be read ({exc}); "
                          f"pick another folder") from None
    if not isinstance(data.get("tool"), str) or not isinstance(data.get("files"), list):
        raise OutputError(f"refusing to write into {folder}: its {MARKER} is not one a minibert builder wrote; "
                          f"pick another folder")
    return data


def _protected(book: Book | None) -> dict[Path, bool]:
    """Folders never written into -> whether their subfolders are refused too."""
    folders: dict[Path, bool] = {Path("/").resolve(): False, Path.home().resolve(): False}
    if book is not None:
        root = book.root.resolve()
        folders[root] = False
        for name in ("notebooks", "minibert", ".git"):
            folders[root / name] = True
        for chapter in book.chapters:
            folders[book.path(chapter.notebook).resolve().parent] = True
    return folders


def check_output_folder(out: Path | str, tool: str, book: Book | None = None) -> Path:
    """The resolved output folder, after checking that `tool` may write into it; OutputError naming it if not."""
    out = Path(out).expanduser().resolve()
    for folder, inside in _protected(book).items():
        if out == folder or (inside and folder in out.parents):
            what = ("the root folder /" if folder == Path("/").resolve() else
                    "the home folder" if folder == Path.home().resolve() else
                    "the repository root" if book is not None and folder == book.root.resolve() else
                    f"the course's own {folder.name}/ folder")
            raise OutputError(f"refusing to write into {out}: it is {what}"
                              f"{'' if out == folder else ' or inside it'}; pick a new or empty folder, "
                              f"e.g. _build/{tool}")
    for parent in (out, *out.parents):
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                where = "it" if parent == out else str(parent)
                raise OutputError(f"refusing to write into {out}: {where} is a file, not a folder; "
                                  f"pick a new or empty folder, e.g. _build/{tool}")
            break
    if not out.exists():
        return out
    marker = _read_marker(out)
    present = [f for f in _files(out) if f != MARKER]
    if marker is None:
        if present or any(out.iterdir()):
            shown = ", ".join(present[:3] or sorted(p.name for p in out.iterdir())[:3])
            raise OutputError(f"refusing to write into {out}: it holds files minibert {tool} did not write "
                              f"({shown}{', ...' if len(present) > 3 else ''}); pick a new or empty folder, "
                              f"e.g. _build/{tool} (only if it is a build by an older minibert, which wrote no {MARKER}, "
                              f"remove it first)")
        return out
    if marker["tool"] != tool:
        raise OutputError(f"refusing to write into {out}: it holds the output of minibert {marker['tool']}, "
                          f"not of minibert {tool}; pick another folder, e.g. _build/{tool}")
    foreign = sorted(set(present) - set(marker["files"]))
    if foreign:
        raise OutputError(f"refusing to write into {out}: it holds files minibert {tool} did not write "
                          f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); move them away "
                          f"or pick another folder")
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _swap(stage: Path, out: Path) -> None:
    """Put stage in out's place; the previous out is removed only once the new one is in place."""
    if not out.exists():
        os.rename(stage, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.rmdir(old)  # only its unique name is needed
    os.rename(out, old)
    try:
        os.rename(stage, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def output_folder(book: Book | None, out: Path | str, tool: str, *, keep: bool = False):
    """Yield an empty temporary folder (or, with keep=True, a copy of the previous output) to build into.

    When the block succeeds, the marker is written and the folder replaces `out`; when it raises, the
    temporary folder is removed and `out` is left exactly as it was. Refusals (see check_output_folder)
    happen before anything is created.
    """
    out = check_output_folder(out, tool, book)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".building", dir=out.parent))
    try:
        os.chmod(stage, 0o777 & ~_umask())
        if keep and out.exists():
            for rel in _files(out):
                if rel != MARKER:
                    (stage / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(out / rel, stage / rel, follow_symlinks=False)
        yield stage
        import json

        (stage / MARKER).write_text(json.dumps({"tool": tool, "files": [f for f in _files(stage) if f != MARKER]},
                                               indent=0) + "\n", encoding="utf-8")
        check_output_folder(out, tool, book)  # nobody put a file there while we were building
        _swap(stage, out)
    except OSError as exc:
        shutil.rmtree(stage, ignore_errors=True)
        raise OutputError(f"could not write {out}: {exc.strerror or exc} ({exc.filename or out}); "
                          f"the previous output is unchanged") from None
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
