"""Slide decks (`minibert slides`): one offline reveal.js deck per chapter, with a title slide, the pictures, and
the exercise prompts but not their solutions; a default deck when a chapter has no slide metadata; and a message
saying what to install when reveal.js or MathJax is missing. All decks are rendered once per test session."""

from __future__ import annotations

import atexit
import functools
import html
import json
import re
import shutil
import tempfile
import time
from pathlib import Path

import leaks
import nbformat
import pytest

from minibert.book.outdir import MARKER
from minibert.book.project import load_book
from minibert.book.slides import (ASSETS, SlidesError, build_slides, deck_name, default_slide_types, find_assets,
                                  slide_notebook)
from minibert.book.student import find_exercises, student_notebook

BOOK = load_book(Path(__file__).resolve().parent.parent)
CHAPTERS = list(BOOK.chapters)
IDS = [c.stem for c in CHAPTERS]
SECRETS = leaks.secrets(BOOK)  # every exercise's answer lines
NODE_MODULES = BOOK.path("node_modules")  # installed by the set-up from package.json
md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


@functools.cache
def built_decks() -> tuple[list[Path], Path]:
    """Every chapter's deck, rendered once per test session (tests/test_browser.py measures the same build)."""
    out = Path(tempfile.mkdtemp(prefix="minibert-slides-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    start = time.perf_counter()
    paths = build_slides(BOOK, BOOK.chapters, out / "slides")
    print(f"\nminibert slides: {len(paths)} decks in {time.perf_counter() - start:.1f}s")
    return paths, out / "slides"


@pytest.fixture(scope="module")
def decks(node_modules):
    """{stem: html} of every chapter's deck, and their folder."""
    paths, out = built_decks()
    return {p.name.removesuffix(".slides.html"): p.read_text(encoding="utf-8") for p in paths}, out


def _sections(deck: str) -> list[str]:
    """The top-level slides' HTML (nbconvert nests subslides in a top-level <section>)."""
    body = deck[deck.index('<div class="slides">'):]
    slides, depth, start = [], 0, 0
    for m in re.finditer(r"<section\b[^>]*>|</section>", body):
        if m.group().startswith("<section"):
            if depth == 0:
                start = m.start()
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                slides.append(body[start:m.end()])
    return slides


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def _book(tmp_path: Path, cells: list):
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "minibert").mkdir()
    nb = nbformat.v4.new_notebook()
    for i, c in enumerate(cells):
        c.id = f"cell-{i}"
    nb.cells = cells
    (tmp_path / "notebooks" / "00_demo.ipynb").write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
    (tmp_path / "book.toml").write_text(
        '[book]\ntitle = "Demo"\nauthors = ["A"]\nlanguage = "en"\ndescription = "d"\n\n'
        '[[chapters]]\nnotebook = "notebooks/00_demo.ipynb"\ntitle = "Demo chapter"\nmodule = "minibert/demo.py"\n',
        encoding="utf-8")
    return load_book(tmp_path)


def _figure_cell(src="plt.plot([1, 2]); plt.show()"):
    cell = code(src)
    cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"})]
    return cell


DEMO = [md("# 00 · Demo\n\nIntro."), code("x = 1"), md("## First idea\n\nText."), code("print(x)"),
        _figure_cell(), md("Some words."), md("## Exercises\n\n**Exercise 0.1.** Double `x`."),
        code("### BEGIN SOLUTION\ny = 2 * x  # the secret answer\n### END SOLUTION"), code("assert y == 2"),
        md("## Summary\n\n$e^{i\\pi} + 1 = 0$")]


# ----------------------------------------------------------------------------------------------- unit tests


def test_default_deck_is_title_sections_figures_and_prompts():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.from_dict(c) for c in DEMO]
    prompts = {e.prompt_cell for e in find_exercises(json.loads(nbformat.writes(nb)), "demo")}
    assert default_slide_types(nb, prompts) == [
        "slide", "skip", "slide", "skip", "slide", "skip", "slide", "skip", "skip", "slide"]


def test_demo_deck_offline_with_title_figure_prompt_and_no_solution(tmp_path, node_modules):
    book = _book(tmp_path, [nbformat.from_dict(c) for c in DEMO])
    [path] = build_slides(book, book.chapters, tmp_path / "out", node_modules=NODE_MODULES)
    deck = path.read_text(encoding="utf-8")
    slides = _sections(deck)
    assert len(slides) == 5
    assert "00 · Demo" in _text(slides[0])
    assert "First idea" in _text(slides[1]) and "print(x)" not in deck
    assert f"data:image/png;base64,{PNG}" in slides[2] and "plt.plot" not in deck  # the picture, not its code
    assert "Exercise 0.1." in _text(slides[3]) and "the secret answer" not in deck and "2 * x" not in deck
    assert "e^{i\\pi}" in deck and "MathJax.js?config=TeX-AMS_CHTML-full" in deck
    _assert_offline(deck, path.parent)


def test_authored_slide_metadata_is_kept(tmp_path, node_modules):
    cells = [nbformat.from_dict(c) for c in DEMO]
    for c in cells:
        c.metadata["slideshow"] = {"slide_type": "skip"}
    cells[0].metadata["slideshow"] = {"slide_type": "slide"}
    cells[3].metadata["slideshow"] = {"slide_type": "subslide"}
    cells[5].metadata["slideshow"] = {"slide_type": "fragment"}
    book = _book(tmp_path, cells)
    nb = slide_notebook(book, book.chapters[0])
    # (the deck adds speaker-notes cells after the prose; the chapter's own cells keep their types)
    kept = [c for c in nb.cells if c.id.startswith("cell-")]
    assert [c.id for c in kept] == [c.id for c in cells]
    assert [c.metadata["slideshow"]["slide_type"] for c in kept] == [c.metadata["slideshow"]["slide_type"]
                                                                     for c in cells]
    [path] = build_slides(book, book.chapters, tmp_path / "out", node_modules=NODE_MODULES)
    deck = path.read_text(encoding="utf-8")
    assert "print(x)" in _text(deck) and "Some words." in deck and "First idea" not in deck
    assert deck.count('class="fragment"') >= 1


def test_a_widget_becomes_a_note_on_its_slide(tmp_path, node_modules):
    cells = [nbformat.from_dict(c) for c in DEMO]
    cells[3].outputs = [nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2, "version_minor": 0},
        "text/plain": "VBox(children=(IntSlider(value=3),))"})]
    cells[3].metadata["slideshow"] = {"slide_type": "slide"}
    cells[0].metadata["slideshow"] = {"slide_type": "slide"}
    book = _book(tmp_path, cells)
    [path] = build_slides(book, book.chapters, tmp_path / "out", node_modules=NODE_MODULES)
    deck = path.read_text(encoding="utf-8")
    assert "run this cell in JupyterLab" in deck and "VBox(" not in deck and "widget-view" not in deck


def test_unknown_slide_type_is_refused(tmp_path):
    cells = [nbformat.from_dict(c) for c in DEMO]
    cells[2].metadata["slideshow"] = {"slide_type": "Slide!"}
    book = _book(tmp_path, cells)
    with pytest.raises(SlidesError, match=r"cell 3: slideshow.slide_type is 'Slide!'"):
        slide_notebook(book, book.chapters[0])


def test_missing_reveal_or_mathjax_says_what_to_install_and_writes_nothing(tmp_path):
    book = _book(tmp_path, [nbformat.from_dict(c) for c in DEMO])
    empty = tmp_path / "node_modules"
    empty.mkdir()
    out = tmp_path / "out"
    with pytest.raises(SlidesError) as info:
        build_slides(book, book.chapters, out, node_modules=empty)
    message = str(info.value)
    assert "reveal.js" in message and "MathJax" in message and "npm" in message and "No deck was written" in message
    assert not out.exists()
    # with reveal.js but no MathJax, only MathJax is named
    (empty / "reveal.js" / "dist").mkdir(parents=True)
    (empty / "reveal.js" / "dist" / "reveal.js").write_text("")
    (empty / "reveal.js" / "plugin" / "notes").mkdir(parents=True)
    (empty / "reveal.js" / "plugin" / "notes" / "notes.js").write_text("")
    with pytest.raises(SlidesError, match="missing: MathJax 2"):
        find_assets(empty)


# ------------------------------------------------------------------------------------------ every chapter


def _assert_offline(deck: str, folder: Path) -> None:
    """Every script, stylesheet and image is embedded or a file next to the deck; nothing names a server."""
    refs = re.findall(r"""<(?:script|link|img|iframe|source)\b[^>]*?\b(?:src|href)=["']([^"']+)["']""", deck)
    refs += re.findall(r"""@import\s+url\(["']?([^"')]+)""", deck)
    assert refs, "no scripts or stylesheets at all"
    for ref in refs:
        assert not re.match(r"(https?:)?//", ref), f"the deck loads {ref} from the network"
        if ref.startswith("data:"):
            continue
        assert (folder / ref.split("?")[0]).is_file(), f"the deck needs {ref}, which is not in {folder}"
    assert not re.search(r"import\s+\w+\s+from\s+['\"]https?:", deck)
    for script in ("reveal.js/dist/reveal.js", "mathjax/MathJax.js"):
        assert f'src="{ASSETS}/{script}' in deck


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_each_chapter_has_a_sensible_offline_deck(chapter, decks):
    rendered, folder = decks
    deck = rendered[chapter.stem]
    assert (folder / deck_name(chapter)).is_file()
    _assert_offline(deck, folder)
    slides = _sections(deck)
    teacher = json.loads(BOOK.path(chapter.notebook).read_text(encoding="utf-8"))
    title = next(line for line in "".join(teacher["cells"][0]["source"]).split("\n") if line.startswith("# "))[2:]
    assert title.strip() in _text(slides[0]), f"{chapter.notebook}: the first slide should show the title {title!r}"
    assert len(slides) >= 3, f"{chapter.notebook}: a deck of {len(slides)} slide(s)"
    # the exercise prompts are in the deck, their solutions are not
    student = student_notebook(BOOK, chapter)
    text = _text(deck)
    for e in student.exercises:
        assert re.search(rf"Exercise\s+{re.escape(e.number)}\b", text), \
            f"{chapter.notebook}: Exercise {e.number}'s prompt is not on any slide"
    # no answer line of any exercise (tests/leaks.py), in the deck as read or as written
    assert leaks.hits(SECRETS, {f"{chapter.stem} deck": text, f"{chapter.stem} deck (HTML)": deck}) == []
    assert "widget-view+json" not in deck, f"{chapter.notebook}: a widget's output would show as its Python repr"
    assert '<aside class="notes">' in deck, f"{chapter.notebook}: no speaker notes"
    # the key pictures: a chapter with figures shows at least one
    figures = sum(any(k in o.get("data", {}) for o in c.get("outputs", []) for k in ("image/png", "image/svg+xml"))
                  for c in teacher["cells"] if c["cell_type"] == "code")
    if figures:
        assert "data:image/png;base64," in deck or "<svg" in deck, f"{chapter.notebook}: no picture in the deck"


def test_demo_deck_runs_offline_in_a_browser(tmp_path, node_modules, chromium):
    """Debian's chromium, headless and with networking off, opens the deck: reveal.js starts and MathJax typesets.

    Without chromium (or node_modules) this skips, naming what to install; under CI it fails (tests/conftest.py)."""
    import subprocess

    browser = chromium
    book = _book(tmp_path, [nbformat.from_dict(c) for c in DEMO])
    [path] = build_slides(book, book.chapters, tmp_path / "out", node_modules=NODE_MODULES)
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--proxy-server=127.0.0.1:9", "--window-size=1280,800",
         "--virtual-time-budget=10000", "--dump-dom", f"{path.as_uri()}#/4"],
        capture_output=True, text=True, timeout=120).stdout
    reveal = re.search(r'<div class="(reveal [^"]*)"', dom)
    assert reveal and "ready" in reveal.group(1).split(), "reveal.js did not start"
    assert re.search(r'<section[^>]*class="present"', dom)
    assert 'class="mjx-chtml MathJax_CHTML"' in dom, "MathJax did not typeset the summary's formula"


def test_command_renders_the_chosen_chapter(tmp_path, capsys, node_modules):
    from minibert.book.cli import main

    out = tmp_path / "decks"
    assert main(["--root", str(BOOK.root), "slides", CHAPTERS[0].stem[:2], "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([ASSETS, MARKER, deck_name(CHAPTERS[0])])
    assert f"wrote {out / deck_name(CHAPTERS[0])}" in capsys.readouterr().out
    assert main(["--root", str(BOOK.root), "slides", "no_such_chapter", "--out", str(out)]) == 2
    assert "no chapter matches ['no_such_chapter']" in capsys.readouterr().err


# ------------------------------------------------------------------------------- fitting a 1280x720 screen
# (tests/test_browser.py measures every slide of every deck in Chromium; these pin down how the build gets there)


def _slide_text(deck: str) -> str:
    """The text on the slides, speaker notes left out."""
    return _text(re.sub(r'<aside class="notes">.*?</aside>', "", deck, flags=re.S))


def _notes_text(deck: str) -> str:
    return _text("".join(re.findall(r'<aside class="notes">(.*?)</aside>', deck, flags=re.S)))


LONG = ("Attention mixes the tokens of a sentence. " + "Each query is compared with every key, and the softmax "
        "turns the scores into weights that sum to one, so the output is an average of the values. " * 3).strip()


def test_long_prose_shows_its_first_sentence_and_goes_whole_to_the_speaker_notes(tmp_path, node_modules):
    prompt = "**Exercise 0.1.** " + LONG  # a prompt stays whole: the class needs all of it
    cells = [md("# 00 · Demo\n\n" + LONG), code("x = 1"), md("## Exercises\n\n" + prompt),
             code("### BEGIN SOLUTION\ny = 2 * x\n### END SOLUTION"), code("assert y == 2")]
    book = _book(tmp_path, cells)
    [path] = build_slides(book, book.chapters, tmp_path / "out", node_modules=NODE_MODULES)
    deck = path.read_text(encoding="utf-8")
    shown, notes = _slide_text(deck), _notes_text(deck)
    assert "Attention mixes the tokens of a sentence. …" in shown
    assert "turns the scores into weights" in notes and " ".join(LONG.split()) in " ".join(notes.split())
    assert "turns the scores into weights" in shown.split("Exercise 0.1.")[1]  # the prompt, whole
    assert deck.count('<aside class="notes">') >= 2


def test_first_sentence_never_ends_inside_code_math_or_bold():
    from minibert.book.slides import first_sentence, shorten

    assert first_sentence("Call `x.view(B, T)` first. Then more.") == "Call `x.view(B, T)` first."
    assert first_sentence("With $p = 0.1. A$ kept. Rest.") == "With $p = 0.1. A$ kept."
    assert first_sentence("No end here") == "No end here"
    long_bold = "**A caveat. Float16** has a small range. " + "More words follow here. " * 12
    assert shorten(long_bold) == "**A caveat.** …"  # the bold is closed again
    assert shorten("- a list item " * 30) == "- a list item " * 30  # lists are not prose


def test_a_long_code_cell_is_left_out_with_a_pointer_and_a_tall_slide_continues(tmp_path, node_modules):
    long_code = "\n".join(f"value_{i} = {i}  # line {i}" for i in range(55))
    table = "| English | 中文 |\n|---|---|\n" + "\n".join(f"| term number {i} | 术语{i} |" for i in range(40))
    paragraphs = "\n\n".join(f"Point {i}: a short claim." for i in range(30))
    numbered = "\n".join(f"{i}. Goal number {i}, " + "said at some length " * 8 for i in range(1, 25))
    cells = [md("# 00 · Demo\n\nIntro."), md("## Code\n\nThe whole module:"), code(long_code), code("short = 1"),
             md("## Many points\n\n" + paragraphs), md("## Terms\n\n" + table), md("## Goals\n\n" + numbered)]
    for c in cells:
        c.metadata["slideshow"] = {"slide_type": "-"}
    for i in (0, 1, 4, 5, 6):
        cells[i].metadata["slideshow"] = {"slide_type": "slide"}
    book = _book(tmp_path, cells)
    [path] = build_slides(book, book.chapters, tmp_path / "out", node_modules=NODE_MODULES)
    deck = path.read_text(encoding="utf-8")
    shown = _slide_text(deck)
    assert "The code of this step (55 lines) is in the notebook 00_demo.ipynb, cell 3." in shown
    assert "value_54" not in deck and "short = 1" in shown
    # 30 points do not fit one slide: they continue on vertical slides, each point shown exactly once
    sections = re.findall(r"<section\b[^>]*>(?:(?!<section).)*?</section>", deck, flags=re.S)
    with_points = [s for s in sections if "Point " in _slide_text(s)]
    assert len(with_points) >= 2
    assert all("Many points (continued)" in _slide_text(s) for s in with_points[1:])
    assert all(shown.count(f"Point {i}: a short claim.") == 1 for i in range(30))
    # the 40-row table is cut into tables that each repeat the header
    tables = [s for s in sections if "term number" in s]
    assert len(tables) >= 2 and all("中文" in s for s in tables)
    assert all(len(re.findall(rf"term number {i}\b", shown)) == 1 for i in range(40))
    # the 24-item list is cut between items, and each later part goes on numbering where the last one stopped
    lists = [s for s in sections if "Goal number" in s]
    assert len(lists) >= 2 and all(len(re.findall(rf"Goal number {i},", shown)) == 1 for i in range(1, 25))
    starts = [int(m) for s in lists[1:] for m in re.findall(r'<ol start="(\d+)"', s)]
    assert len(starts) == len(lists) - 1 and all(f"<li>Goal number {n}," in s for n, s in zip(starts, lists[1:]))


def test_the_calculator_widget_links_to_the_app(tmp_path, node_modules):
    from minibert.book.app import DEFAULT_PORT, app_url

    cells = [nbformat.from_dict(c) for c in DEMO]
    cells[3].outputs = [nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2, "version_minor": 0},
        "text/plain": "ParameterCalculator(children=(HBox(children=(VBox(children=(Dropdown(...",
    })]
    cells[3].metadata["slideshow"] = {"slide_type": "slide"}
    book = _book(tmp_path, cells)
    [path] = build_slides(book, book.chapters, tmp_path / "out", node_modules=NODE_MODULES)
    deck = path.read_text(encoding="utf-8")
    assert f'<a href="{app_url(DEFAULT_PORT)}">' in deck and "<code>minibert app</code>" in deck
    assert "ParameterCalculator(" not in deck


def test_chapter_07s_deck_links_to_the_live_calculator(decks):
    from minibert.book.app import DEFAULT_PORT, app_url

    rendered, _ = decks
    [stem] = [s for s in rendered if s.startswith("07_")]
    assert f'<a href="{app_url(DEFAULT_PORT)}">' in rendered[stem] and "minibert app" in _slide_text(rendered[stem])
