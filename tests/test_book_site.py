"""The `make book` site, checked without a browser: every page, link, image and script of the real build.

Builds the course into a temporary folder once (timed: the whole build must take under 60 s), then walks
every page: internal links resolve to files and anchors, images are embedded or exist, and no script,
stylesheet or image comes from the network. The index and the glossary are compared with the chapters'
learning goals and terms tables, parsed here independently of minibert.book.render.
"""

from __future__ import annotations

import atexit
import functools
import json
import re
import shutil
import tempfile
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import leaks
import nbformat
import pytest

from minibert.book import render
from minibert.book.project import load_book
from minibert.book.student import student_notebook

ROOT = Path(__file__).resolve().parent.parent
BUILD_SECONDS = 60


class Page(HTMLParser):
    """The links, resources, ids and text of one HTML page."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []  # <a href>
        self.rel: dict[str, set[str]] = {}  # <a rel=...> -> hrefs
        self.resources: list[tuple[str, str]] = []  # (tag, url) the browser loads: script/img/link/iframe/...
        self.ids: set[str] = set()
        self.text: list[str] = []
        self.scripts_types: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a" and a.get("name"):
            self.ids.add(a["name"])
        if tag == "a" and a.get("href") is not None:
            self.links.append(a["href"])
            if a.get("rel"):
                self.rel.setdefault(a["rel"], set()).add(a["href"])
        if tag in ("script", "img", "iframe", "source", "video", "audio", "embed") and a.get("src"):
            self.resources.append((tag, a["src"]))
        if tag == "link" and a.get("href") and "stylesheet" in (a.get("rel") or "") + (a.get("as") or ""):
            self.resources.append((tag, a["href"]))
        if tag == "script":
            self.scripts_types.append(a.get("type", "text/javascript"))

    def handle_data(self, data):
        self.text.append(data)


def _is_external(url: str) -> bool:
    return urlsplit(url).scheme in ("http", "https") or url.startswith("//")


@pytest.fixture(scope="module")
def book():
    return load_book(ROOT)


@functools.cache
def built_book() -> tuple[Path, float]:
    """The course rendered once per test session (tests/test_browser.py serves the same build):
    (folder, seconds the build took)."""
    out = Path(tempfile.mkdtemp(prefix="minibert-book-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    start = time.perf_counter()
    index = render.build_book(load_book(ROOT), out / "book", progress=False)
    return index.parent, time.perf_counter() - start


@pytest.fixture(scope="module")
def site(node_modules):
    return built_book()


def _pages(folder: Path) -> dict[str, Page]:
    return {p.name: Page(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.html"))}


def test_the_whole_build_takes_under_a_minute(site):
    _, seconds = site
    assert seconds < BUILD_SECONDS, f"the book took {seconds:.1f} s to build; the budget is {BUILD_SECONDS} s"


def test_one_page_per_chapter_plus_index_and_glossary(site, book):
    folder, _ = site
    expected = {f"{Path(c.notebook).stem}.html" for c in book.chapters} | {"index.html", "glossary.html"}
    assert {p.name for p in folder.glob("*.html")} == expected


def test_no_broken_internal_links_anchors_or_missing_images(site):
    folder, _ = site
    pages = _pages(folder)
    problems = []
    for name, page in pages.items():
        for href in page.links:
            parts = urlsplit(href)
            if parts.scheme or href.startswith("//"):
                continue  # links to papers and docs on the web are fine to *follow*; nothing loads them
            target_name = unquote(parts.path) or name
            target = (folder / name).parent / target_name
            if not target.is_file():
                problems.append(f"{name}: link {href!r} points to a missing file")
            elif parts.fragment and target.suffix == ".html":
                # Browsers match the fragment as written, then percent-decoded (nbconvert's ids keep %XX).
                if not {parts.fragment, unquote(parts.fragment)} & pages[target.name].ids:
                    problems.append(f"{name}: link {href!r}: no id {parts.fragment!r} in {target.name}")
        for tag, src in page.resources:
            if src.startswith("data:"):
                assert re.match(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=\s]{16,}", src[:200]), \
                    f"{name}: empty embedded {tag}"
                continue
            if _is_external(src):
                problems.append(f"{name}: <{tag}> loads {src!r} from the network; the book must work offline")
                continue
            path = folder / unquote(urlsplit(src).path)
            if not path.is_file():
                problems.append(f"{name}: <{tag}> {src!r} is missing from the build")
    assert not problems, "\n".join(problems)


def test_chapter_pages_use_the_local_mathjax_require_js_and_widget_manager(site, book):
    folder, _ = site
    for chapter in book.chapters:
        text = (folder / f"{Path(chapter.notebook).stem}.html").read_text(encoding="utf-8")
        srcs = [src for tag, src in Page(text).resources if tag == "script"]
        assert "assets/require.js" in srcs, chapter.notebook
        assert "assets/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe" in srcs, chapter.notebook
        # nbconvert's CDN defaults must not be anywhere in the page, not even inside inline scripts.
        for cdn in ("cdnjs.cloudflare.com", "cdn.jsdelivr.net", "unpkg.com"):
            assert cdn not in text, f"{chapter.notebook}'s page mentions {cdn}"
    for asset in ("assets/require.js", "assets/mathjax/MathJax.js", "assets/mathjax/config/TeX-AMS_CHTML-full.js",
                  "assets/mathjax/jax/output/CommonHTML/jax.js", "assets/html-manager/embed-amd.js"):
        assert (folder / asset).stat().st_size > 1000, asset
    assert list((folder / "assets/mathjax/fonts/HTML-CSS/TeX/woff").glob("*.woff")), "MathJax's web fonts"


def test_chapter_pages_have_titles_and_previous_next_links_in_book_order(site, book):
    folder, _ = site
    names = [f"{Path(c.notebook).stem}.html" for c in book.chapters]
    for i, chapter in enumerate(book.chapters):
        text = (folder / names[i]).read_text(encoding="utf-8")
        title = re.search(r"<title>(.*?)</title>", text, re.S).group(1)
        assert chapter.title.replace("&", "&amp;") in title
        page = Page(text)
        assert page.rel.get("prev", set()) == ({names[i - 1]} if i > 0 else set())
        assert page.rel.get("next", set()) == ({names[i + 1]} if i + 1 < len(names) else set())
        assert {"index.html", "glossary.html"} <= set(page.links)


def _goals_by_hand(nb) -> list[str]:
    """The numbered or bulleted items right after a "Learning goals" line, read without render.py."""
    for cell in nb.cells:
        if cell.cell_type != "markdown" or "learning goals" not in cell.source.lower():
            continue
        after = cell.source[cell.source.lower().index("learning goals"):].splitlines()[1:]
        items = []
        for line in after:
            m = re.match(r"\s*(?:\d+\.|[-*])\s+(.*)", line)
            if m:
                items.append(m.group(1).strip())
            elif items and line.strip() and not line.startswith(" "):
                break
        return items
    return []


def _terms_by_hand(nb) -> list[tuple[str, str]]:
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        m = re.search(r"^##+ *(?:key +)?(?:terms|glossary|术语).*?\n((?:\s*\|.*\n?)+)", cell.source, re.M | re.I)
        if m:
            rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in m.group(1).strip().splitlines()]
            return [(r[0], r[1]) for r in rows[2:] if len(r) >= 2]
    return []


def _visible(markdown: str) -> str:
    """Words of a markdown fragment as they read on the page (no backticks, stars or underscores)."""
    return re.sub(r"\s+", " ", re.sub(r"[`*_]|\\", "", markdown)).strip()


def _page_text(path: Path) -> str:
    import html

    text = re.sub(r"<[^>]+>", "", path.read_text(encoding="utf-8"))
    return _visible(html.unescape(text))


def test_index_lists_every_chapter_with_its_learning_goals(site, book):
    folder, _ = site
    index = (folder / "index.html").read_text(encoding="utf-8")
    text = _page_text(folder / "index.html")
    assert book.title in text and book.description in text
    positions = [index.index(f'href="{Path(c.notebook).stem}.html"') for c in book.chapters]
    assert positions == sorted(positions), "chapters must appear in book.toml order"
    with_goals = 0
    for chapter in book.chapters:
        goals = _goals_by_hand(nbformat.read(book.path(chapter.notebook), as_version=4))
        with_goals += bool(goals)
        for goal in goals:
            assert _visible(goal) in text, f"index misses {chapter.notebook}'s goal {goal!r}"
    assert with_goals >= 1, "no chapter has a Learning goals list"


def test_glossary_gathers_every_chapters_terms(site, book):
    folder, _ = site
    text = _page_text(folder / "glossary.html")
    glossary = (folder / "glossary.html").read_text(encoding="utf-8")
    missing = []
    for chapter in book.chapters:
        terms = _terms_by_hand(nbformat.read(book.path(chapter.notebook), as_version=4))
        if not terms:
            missing.append(chapter.notebook)
            continue
        assert f'href="{Path(chapter.notebook).stem}.html#' in glossary  # the anchor is checked by the link walk
        for english, chinese in terms:
            assert _visible(english) in text and _visible(chinese) in text, (chapter.notebook, english, chinese)
    assert not missing, f"chapters without a '## Terms' table (English | 中文): {missing}"


def test_goals_and_terms_parsers_on_hand_written_cells():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# 99 · A chapter\n\nIntro.\n\n## Learning goals\n\nYou will:\n\n"
                                      "- Build `X` and\n  check it.\n- Compare $a^2$ with b.\n\nThen text."),
        nbformat.v4.new_code_cell("1 + 1"),
        nbformat.v4.new_markdown_cell("## Terms\n\n| English | 中文 |\n|:--|--:|\n| layer norm | 层归一化 |\n"
                                      "| `a \\| b` | 或 |\n\n## After"),
    ])
    assert render.learning_goals(nb) == ["Build `X` and check it.", "Compare $a^2$ with b."]
    assert render.terms_table(nb) == [("layer norm", "层归一化"), ("`a | b`", "或")]
    assert render.terms_anchor(nb) == "Terms"
    nb.cells[2].source = nb.cells[2].source.replace("## Terms", "## Terms · 术语")
    assert render.terms_anchor(nb) == "Terms-%C2%B7-%E6%9C%AF%E8%AF%AD"  # as nbconvert writes the heading's id
    assert render.terms_table(nb)[0] == ("layer norm", "层归一化")
    empty = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 98 · Being written")])
    assert render.learning_goals(empty) == [] and render.terms_table(empty) == []


def test_a_chapter_without_goals_or_terms_still_builds(tmp_path, node_modules):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "node_modules").symlink_to(ROOT / "node_modules", target_is_directory=True)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 00 · Being written")])
    nbformat.write(nb, tmp_path / "notebooks" / "00_draft.ipynb")
    (tmp_path / "book.toml").write_text(
        '[book]\ntitle = "T"\nauthors = ["A"]\nlanguage = "en"\ndescription = "D"\n\n'
        '[[chapters]]\nnotebook = "notebooks/00_draft.ipynb"\ntitle = "Draft"\nmodule = "minibert/draft.py"\n')
    index = render.build_book(load_book(tmp_path), tmp_path / "out", progress=False)
    assert "Draft" in _page_text(index)
    assert "No terms table yet in: 00 Draft" in _page_text(index.parent / "glossary.html")


def test_missing_npm_packages_give_a_clear_error(tmp_path):
    from minibert.book.project import BookError

    (tmp_path / "notebooks").mkdir()
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "notebooks" / "00_a.ipynb")
    (tmp_path / "book.toml").write_text(
        '[book]\ntitle = "T"\nauthors = ["A"]\nlanguage = "en"\ndescription = "D"\n\n'
        '[[chapters]]\nnotebook = "notebooks/00_a.ipynb"\ntitle = "A"\nmodule = "minibert/a.py"\n')
    with pytest.raises(BookError, match=r"npm ci"):
        render.build_book(load_book(tmp_path), tmp_path / "out", progress=False)


def test_the_npm_lock_pins_what_the_book_copies():
    lock = json.loads((ROOT / "package-lock.json").read_text())
    package = json.loads((ROOT / "package.json").read_text())
    for name, _, _ in render._NPM_ASSETS:
        assert name in package["dependencies"], name
        assert lock["packages"][f"node_modules/{name}"]["version"] == package["dependencies"][name]


def test_browser_tests_skip_without_a_browser_but_fail_under_ci(monkeypatch, tmp_path):
    import conftest  # tests/ is on sys.path under pytest; the browser tests' `chromium` fixture asks these two

    monkeypatch.setenv("MINIBERT_CHROMIUM", str(tmp_path / "no-such-chromium"))
    assert conftest.chromium_path() is None
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no Chromium"):
        conftest.unavailable("no Chromium browser")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        conftest.unavailable("no Chromium browser")


def test_links_to_chapter_notebooks_point_at_their_pages(book):
    first, second = book.chapters[0].stem, book.chapters[1].stem
    page = (f'<a href="{second}.ipynb">next</a> <a href="../notebooks/{first}.ipynb#Terms">terms</a> '
            f'<a href="other.ipynb">not a chapter</a> <a href="https://example.org/{first}.ipynb">web</a>')
    assert render.link_chapters(page, book) == (
        f'<a href="{second}.html">next</a> <a href="{first}.html#Terms">terms</a> '
        f'<a href="other.ipynb">not a chapter</a> <a href="https://example.org/{first}.ipynb">web</a>')


def test_npm_tests_skip_without_node_modules_but_fail_under_ci(monkeypatch, tmp_path):
    """The `node_modules` fixture (tests/conftest.py) checks the packages package.json installs."""
    import conftest

    package = json.loads((ROOT / "package.json").read_text())
    assert set(conftest.NPM_PACKAGES) <= set(package["dependencies"])
    assert conftest.missing_npm_packages(tmp_path) == list(conftest.NPM_PACKAGES)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="npm"):
        conftest.unavailable(f"needs the npm packages: {conftest.INSTALL_NPM}")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        conftest.unavailable(f"needs the npm packages: {conftest.INSTALL_NPM}")


# ---------------------------------------------------------------------------------------------- editions


@functools.cache
def built_class_book() -> Path:
    """The class edition, rendered once per test session."""
    out = Path(tempfile.mkdtemp(prefix="minibert-book-class-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    return render.build_book(load_book(ROOT), out / "book", progress=False, edition="class").parent


def _norm(text: str) -> str:
    return " ".join(text.split())


def _solution_lines(book) -> dict[str, list]:
    """{notebook: its exercises' answer lines (tests/leaks.py: the comment off, compared without white space; lines
    a student has seen before the exercise, and lines that only move names around, left out)}."""
    lines: dict[str, list] = {chapter.notebook: [] for chapter in book.chapters}
    for secret in leaks.secrets(book):
        lines[secret.notebook].append(secret)
    return lines


def _vendored(folder: Path) -> set[Path]:
    """Files of the build that are byte-for-byte copies of an npm package's file (MathJax, require.js, ...)."""
    import hashlib

    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    npm = {digest(p) for name, _, _ in render._NPM_ASSETS for p in (ROOT / "node_modules" / name).rglob("*")
           if p.is_file()}
    return {p for p in folder.rglob("*") if p.is_file() and digest(p) in npm}


def _searchable(path: Path) -> str:
    """A built file as text to search: as written (JSON, JS, CSS), and for HTML also as the reader sees it
    (tags dropped, entities decoded), with runs of white space made one space."""
    import html

    raw = path.read_bytes().decode("utf-8", errors="replace")
    text = raw
    if path.suffix in (".html", ".htm"):
        text += "\n" + html_text(raw)
    return _norm(text)


def test_class_edition_has_no_solution_line_anywhere(book, node_modules):
    """Every file the class edition writes (pages, index, glossary, any JSON or script; the npm copies aside),
    searched for every solution line of every chapter: none is found, and neither are the markers."""
    folder = built_class_book()
    lines = _solution_lines(book)
    assert sum(map(len, lines.values())) >= 20, "too few solution lines to make this test mean anything"
    vendored = _vendored(folder)
    files = [p for p in sorted(folder.rglob("*")) if p.is_file() and p not in vendored]
    assert {p.name for p in files} >= {"index.html", "glossary.html"} | {render.page_name(c) for c in book.chapters}
    found = []
    for path in files:
        text = _searchable(path)
        assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text, path
        found += leaks.hits([s for chapter_lines in lines.values() for s in chapter_lines],
                            {str(path.relative_to(folder)): text})
    assert not found, "solution lines in the class edition:\n" + "\n".join(found)
    # What the exercise cell shows instead: the student version's stub.
    for chapter in book.chapters:
        page = _searchable(folder / render.page_name(chapter))
        for e in student_notebook(book, chapter).exercises:
            if e.solution_cells:
                assert f'raise NotImplementedError("Exercise {e.number}:' in page, (chapter.notebook, e.number)


def test_self_study_edition_folds_each_solution_after_its_exercise(site, book):
    """The default edition: every solution line is on its chapter's page, inside a closed "Show a solution" fold
    that comes after the exercise's stub; outside the folds the page reads like the class edition."""
    folder, _ = site
    lines = _solution_lines(book)
    for chapter in book.chapters:
        raw = (folder / render.page_name(chapter)).read_text(encoding="utf-8")
        assert "BEGIN SOLUTION" not in raw and "END SOLUTION" not in raw, chapter.notebook
        folds = re.findall(r'<details class="minibert-solution" data-exercise="([\d.]+)">(.*?)</details>', raw, re.S)
        assert re.findall(r"<details\b[^>]*\bopen\b", raw) == [], "a fold starts closed"
        exercises = [e for e in student_notebook(book, chapter).exercises if e.solution_cells]
        assert [number for number, _ in folds] == [e.number for e in exercises], chapter.notebook
        for number, body in folds:
            assert "<summary>Show a solution" in body
            stub = raw.index(f"Exercise {number}:")  # the stub's message, in the exercise cell
            assert stub < raw.index(f'data-exercise="{number}"'), f"{chapter.notebook}: fold {number} before its stub"
        inside = leaks.squeeze(html_text("".join(body for _, body in folds)))
        outside = leaks.squeeze(html_text(re.sub(r'<details class="minibert-solution".*?</details>', "", raw,
                                                 flags=re.S)))
        for s in lines[chapter.notebook]:
            assert s.key in inside, f"{chapter.notebook}: solution line {s.line!r} is not in a fold"
            assert s.key not in outside, f"{chapter.notebook}: solution line {s.line!r} outside the folds"


def html_text(fragment: str) -> str:
    """HTML as the reader sees it: tags dropped (highlighted code is one <span> per token), entities decoded."""
    import html

    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def test_book_command_refuses_an_unknown_edition(tmp_path, capsys):
    from minibert.book.cli import main

    with pytest.raises(SystemExit) as info:
        main(["--root", str(ROOT), "book", "--edition", "teacher", "--out", str(tmp_path / "b")])
    assert info.value.code == 2
    assert "unknown book edition 'teacher'; expected one of: self-study, class" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"unknown book edition 'Class'"):
        render.build_book(load_book(ROOT), tmp_path / "b", progress=False, edition="Class")
    assert not (tmp_path / "b").exists()
