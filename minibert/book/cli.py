"""The `minibert` command (also `python -m minibert`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .project import BookError, load_book


def _cmd_sync(book, args) -> int:
    from .mirror import sync

    written = sync(book, force=args.force)
    print(f"minibert sync: wrote {', '.join(written)}" if written else "minibert sync: package is up to date")
    return 0


def _cmd_check(book, args) -> int:
    from .mirror import drifted

    problems = drifted(book)
    if not problems:
        print(f"minibert check: the package matches the notebooks ({len(book.chapters)} chapters)")
        return 0
    for p in problems:
        print(f"minibert check: {p.path} is {p.reason}", file=sys.stderr)
        if p.diff and args.verbose:
            print(p.diff, file=sys.stderr)
    names = ", ".join(p.path for p in problems)
    print(f"minibert check: FAILED, drifted: {names}. Run `minibert sync` (a hand edit needs `--force`, "
          f"and is lost: move it into the notebook first).", file=sys.stderr)
    return 1


def _cmd_chapters(book, args) -> int:
    print(" ".join(c.notebook for c in book.chapters))
    return 0


def _cmd_book(book, args) -> int:
    from .render import build_book

    index = build_book(book, Path(args.out) if args.out else None)
    print(f"minibert book: wrote {index}")
    return 0


def _cmd_run(book, args) -> int:
    from .execute import execute_notebooks
    from .mirror import sync

    chosen = [c for c in book.chapters if not args.chapters or any(
        c.notebook.endswith(a) or c.stem.startswith(a) or Path(a).name == Path(c.notebook).name for a in args.chapters)]
    if args.chapters and not chosen:
        raise BookError(f"no chapter matches {args.chapters}; chapters: {[c.stem for c in book.chapters]}")
    sync(book)  # earlier chapters' code must be importable by later ones
    execute_notebooks(book, chosen)
    written = sync(book)
    if written:
        print(f"minibert run: re-synced {', '.join(written)}")
    return 0


def _select(book, names: list[str]):
    """Chapters matching numbers or notebook names (all when none are given)."""
    chosen = [c for c in book.chapters if not names or any(
        c.notebook.endswith(a) or c.stem.startswith(a) or Path(a).name == Path(c.notebook).name for a in names)]
    if names and not chosen:
        raise BookError(f"no chapter matches {names}; chapters: {[c.stem for c in book.chapters]}")
    return chosen


def _cmd_student(book, args) -> int:
    from .student import build_student

    written = build_student(book, Path(args.out))
    print(f"minibert student: wrote {len(written) - 1} student notebooks and README.md to {args.out}")
    return 0


def _cmd_slides(book, args) -> int:
    from .slides import build_slides

    decks = build_slides(book, _select(book, args.chapters), Path(args.out) if args.out else None)
    for deck in decks:
        print(f"minibert slides: wrote {deck}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minibert", description="Tools for the minibert course.")
    parser.add_argument("--root", help="the course repository (default: the folder holding book.toml)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("sync", help="regenerate the package from the notebooks' #| export cells")
    p.add_argument("--force", action="store_true", help="overwrite generated modules even if edited by hand")
    p.set_defaults(func=_cmd_sync)

    p = sub.add_parser("check", help="exit 1 and name every module that differs from the notebooks")
    p.add_argument("-v", "--verbose", action="store_true", help="show the start of each difference")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("chapters", help="print the chapter notebooks in book order")
    p.set_defaults(func=_cmd_chapters)

    p = sub.add_parser("book", help="render the course to HTML in _build/book/")
    p.add_argument("--out", help="output folder (default: _build/book)")
    p.set_defaults(func=_cmd_book)

    p = sub.add_parser("run", help="execute notebooks top to bottom in place, saving outputs, then sync")
    p.add_argument("chapters", nargs="*", help="chapter numbers or notebook names (default: all)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("student", help="write student notebooks (solutions replaced by NotImplementedError) and a README")
    p.add_argument("--out", required=True, help="output folder, e.g. _build/student (never notebooks/)")
    p.set_defaults(func=_cmd_student)

    p = sub.add_parser("slides", help="render chapters as offline reveal.js slide decks in _build/slides/")
    p.add_argument("chapters", nargs="*", help="chapter numbers or notebook names (default: all)")
    p.add_argument("--out", help="output folder (default: _build/slides)")
    p.set_defaults(func=_cmd_slides)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        book = load_book(Path(args.root) if args.root else None)
        return args.func(book, args)
    except BookError as exc:
        print(f"minibert {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
