"""README.md stays true: its chapter list is book.toml's, and its quick start names the real targets."""

import re
from pathlib import Path

from minibert.book.project import load_book

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_chapter_table_matches_book_toml():
    table = README.split("<!-- chapters:")[1].split("<!-- /chapters -->")[0]
    rows = [line.split("|")[1:5] for line in table.splitlines() if re.match(r"\| \d\d \|", line)]
    book = load_book(ROOT)
    assert len(rows) == len(book.chapters)
    for row, chapter in zip(rows, book.chapters):
        number, title, notebook, modules = (cell.strip() for cell in row)
        assert number == f"{chapter.number:02d}"
        assert title == chapter.title
        assert notebook == f"`{chapter.notebook}`"
        assert modules == ", ".join(f"`{m}`" for m in chapter.modules)


def test_quick_start_commands_are_make_targets():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, flags=re.M))
    for target in re.findall(r"^make ([a-z-]+)", README, flags=re.M):
        assert target in targets, f"README mentions `make {target}`, which the Makefile lacks"
    for target in ("lab", "test", "book"):
        assert f"make {target}" in README
