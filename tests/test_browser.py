"""The book and the calculator app in a real browser: Playwright for Python driving Debian's chromium.

The book is served from 127.0.0.1 and every request the pages make is routed through a guard that aborts
(and records) anything not on localhost, so the tests prove the site works offline. Screenshots go to
_build/screenshots/. With no browser installed these tests skip, except under CI (env CI set), where they fail.
"""

from __future__ import annotations

import base64
import functools
import http.server
import re
import threading
from pathlib import Path
from urllib.parse import urlsplit

import nbformat
import pytest

from minibert.book import render
from minibert.book.project import load_book

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "_build" / "screenshots"
BOOK = load_book(ROOT)
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


from conftest import running_app  # noqa: E402  (tests/ is on sys.path)


class Guard:
    """Records every request of a browser context; aborts and remembers those that leave localhost."""

    def __init__(self, context):
        self.external: list[str] = []
        self.failed: list[str] = []  # responses with an HTTP error status, and requests that failed
        self.errors: list[str] = []  # uncaught JavaScript errors
        context.route("**/*", self._route)
        context.on("response", lambda r: r.status >= 400 and self.failed.append(f"{r.status} {r.url}"))
        context.on("requestfailed", self._request_failed)

    def _route(self, route):
        url = route.request.url
        if urlsplit(url).scheme in ("data", "blob", "about") or urlsplit(url).hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            self.external.append(url)
            route.abort("blockedbyclient")

    def _request_failed(self, request):
        # net::ERR_ABORTED is a request the page cancelled itself, e.g. MathJax still fetching a font when the
        # test navigates on: not a fault of the site (a missing file shows up as a 404 response above).
        if request.url not in self.external and "ERR_ABORTED" not in (request.failure or ""):
            self.failed.append(f"{request.failure} {request.url}")

    def watch(self, page):
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        return page

    def check(self):
        assert not self.external, f"requests left localhost: {self.external}"
        assert not self.failed, f"failed requests: {self.failed}"
        assert not self.errors, f"JavaScript errors: {self.errors}"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def serve():
    """serve(folder) -> base URL of a static HTTP server for `folder` on 127.0.0.1."""
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def book_url(serve, node_modules):
    from test_book_site import built_book  # one build for both files (tests/ is on sys.path under pytest)

    folder, _ = built_book()
    return serve(folder)


@pytest.fixture(scope="module")
def _context(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    guard = Guard(context)
    page = guard.watch(context.new_page())
    page.guard = guard
    yield page
    context.close()


@pytest.fixture
def page(_context):
    """One tab for the module (a context per test costs seconds); each test starts with a clean record."""
    guard = _context.guard
    guard.external.clear(), guard.failed.clear(), guard.errors.clear()
    return _context


def _shot(page, name: str) -> None:
    """A full-page screenshot under _build/screenshots/ (JPEG: long pages encode several times faster)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / name
    if path.suffix == ".jpg":
        page.screenshot(path=str(path), full_page=True, type="jpeg", quality=70)
    else:
        page.screenshot(path=str(path), full_page=True)


def _rendered_images(page) -> int:
    """Images on the page that loaded and have pixels."""
    return page.evaluate("() => [...document.images].filter(i => i.complete && i.naturalWidth > 0).length")


# Formulas MathJax typeset as errors: a TeX syntax error (<merror>) or an undefined macro (red <mtext>).
MATH_ERRORS = """() => [...document.querySelectorAll('.MathJax_CHTML')]
    .map(e => e.getAttribute('data-mathml') || '')
    .filter(m => m.includes('<merror') || /<mtext mathcolor="red">\\\\/.test(m))"""


def _has_math(nb) -> bool:
    return any(cell.cell_type == "markdown" and re.search(r"\$[^$\s][^$]*\$|\\\(|\\\[", cell.source)
               for cell in nb.cells)


def _has_saved_widgets(nb) -> bool:
    return "widgets" in nb.metadata and any(
        "application/vnd.jupyter.widget-view+json" in out.get("data", {})
        for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs)


# ---------------------------------------------------------------------------------------------- the book


def test_index_lists_every_chapter(page, book_url):
    page.goto(book_url + "index.html")
    assert page.title() == BOOK.title
    assert page.locator("h1").first.inner_text() == BOOK.title
    hrefs = page.locator("ol.chapters h2 a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    assert hrefs == [render.page_name(c) for c in BOOK.chapters]
    _shot(page, "book-index.png")
    page.guard.check()


@pytest.mark.parametrize("chapter", BOOK.chapters, ids=[c.stem for c in BOOK.chapters])
def test_each_chapter_link_opens_a_page_with_title_and_figure(page, book_url, chapter):
    page.goto(book_url + "index.html")
    page.locator(f'ol.chapters a[href="{render.page_name(chapter)}"]').click()
    page.wait_for_load_state("load")
    assert page.url == book_url + render.page_name(chapter)
    assert chapter.title in page.title()
    assert chapter.title in page.locator("main h1").first.inner_text()
    assert page.locator(".jp-RenderedImage img, .jp-RenderedSVG svg").count() >= 1, \
        f"{chapter.notebook} has no figure (a plot or picture in an output)"
    assert _rendered_images(page) >= 1, f"{chapter.notebook}: no image has loaded"
    nb = nbformat.read(BOOK.path(chapter.notebook), as_version=4)
    if _has_math(nb):
        page.wait_for_selector(".MathJax_CHTML", state="attached", timeout=30_000)
        page.wait_for_function("() => window.MathJax && MathJax.Hub && MathJax.Hub.queue.pending === 0 "
                               "&& !document.querySelector('.MathJax_Processing')", timeout=30_000)
        bad = page.evaluate(MATH_ERRORS)
        assert not bad, f"{chapter.notebook}: formulas MathJax cannot typeset: {bad}"
    if _has_saved_widgets(nb):
        page.wait_for_selector(".jupyter-widgets", timeout=30_000)
    _shot(page, f"book-{chapter.stem}.jpg")
    page.guard.check()


def test_glossary_lists_terms_from_every_chapter(page, book_url):
    page.goto(book_url + "index.html")
    page.locator("nav.site a", has_text="Glossary").click()
    page.wait_for_load_state("load")
    rows = page.locator("table.glossary tbody tr")
    assert rows.count() > 0
    missing = []
    for chapter in BOOK.chapters:
        link = page.locator(f'table.glossary a[href^="{render.page_name(chapter)}#"]')
        if link.count() == 0:
            missing.append(chapter.notebook)
    _shot(page, "book-glossary.png")
    assert not missing, f"the glossary has no terms from {missing}"
    # A term's chapter link lands on that chapter's Terms table.
    page.locator("table.glossary tbody tr a").first.click()
    page.wait_for_load_state("load")
    fragment = page.url.partition("#")[2]
    assert fragment and page.locator(f'[id="{fragment}"]').is_visible()
    page.guard.check()


def test_a_solution_stays_folded_until_the_reader_opens_it(page, book_url):
    """The self-study edition in the browser: the exercise's stub shows, its solution does not until
    "Show a solution" is clicked."""
    from minibert.book.student import student_notebook

    chapter = next(c for c in BOOK.chapters if any(e.solution_cells for e in student_notebook(BOOK, c).exercises))
    exercise = next(e for e in student_notebook(BOOK, chapter).exercises if e.solution_cells)
    page.goto(book_url + render.page_name(chapter))
    fold = page.locator(f'details.minibert-solution[data-exercise="{exercise.number}"]')
    solution = fold.locator(".jp-CodeCell").first
    assert fold.count() == 1 and not solution.is_visible()
    assert page.get_by_text(f"Exercise {exercise.number}:", exact=False).first.is_visible()  # the stub's message
    fold.locator("summary", has_text="Show a solution").click()
    assert solution.is_visible() and "BEGIN SOLUTION" not in solution.inner_text()
    page.guard.check()


# A two-cell course written here, so the math, the figure, a markdown image and saved widgets are tested
# whatever the chapters contain today.
FIXTURE_CELLS = [
    ("markdown", "# 00 · Fixture chapter\n\n**Learning goals**\n\n1. See $E = mc^2$ typeset offline.\n"),
    ("markdown", "Inline $\\sqrt{d_{head}}$ and display math:\n\n$$\\sum_{i=1}^{n} i = \\frac{n(n+1)}{2}$$\n\n"
                 "![a red dot](dot.png)"),
    ("code", "import matplotlib.pyplot as plt\n"
             "plt.plot([0, 1, 2], [0, 1, 4])\nplt.show()"),
    ("code", "import ipywidgets as widgets\n"
             "layers = widgets.IntSlider(value=7, min=1, max=48, description='Layers')\n"
             "total = widgets.HTML('<span class=\"fixture-total\">109,482,240</span>')\n"
             "widgets.VBox([layers, total])"),
    ("markdown", "## Terms\n\n| English | 中文 |\n|---|---|\n| widget | 小部件 |\n"),
]
RED_DOT = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAQAAAAECAIAAAAmkwkpAAAAEklEQVR4nGP4z8AARwzEcQYGAMdsC/Xm0+f2AAAAAElFTkSuQmCC")


@pytest.fixture(scope="module")
def fixture_book_url(serve, tmp_path_factory, node_modules):
    from minibert.book.execute import execute_notebook

    root = tmp_path_factory.mktemp("fixture")
    (root / "notebooks").mkdir()
    (root / "notebooks" / "dot.png").write_bytes(RED_DOT)
    (root / "node_modules").symlink_to(ROOT / "node_modules", target_is_directory=True)
    make = {"markdown": nbformat.v4.new_markdown_cell, "code": nbformat.v4.new_code_cell}
    nb = nbformat.v4.new_notebook(cells=[make[kind](source) for kind, source in FIXTURE_CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "notebooks" / "00_fixture.ipynb")
    (root / "book.toml").write_text(
        '[book]\ntitle = "Fixture"\nauthors = ["Tests"]\nlanguage = "en"\ndescription = "A test course."\n\n'
        '[[chapters]]\nnotebook = "notebooks/00_fixture.ipynb"\ntitle = "Fixture chapter"\n'
        'module = "minibert/fixture.py"\n')
    book = load_book(root)
    execute_notebook(book, book.chapters[0], timeout=120)
    executed = nbformat.read(root / "notebooks" / "00_fixture.ipynb", as_version=4)
    state = executed.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    sliders = [m["state"] for m in state.values() if m["model_name"] == "IntSliderModel"]
    assert [s["value"] for s in sliders] == [7], "minibert run must store the widgets' state in the notebook"
    render.build_book(book, root / "_build" / "book", progress=False)
    return serve(root / "_build" / "book")


def test_formulas_figures_images_and_saved_widgets_render_offline(page, fixture_book_url):
    page.goto(fixture_book_url + "00_fixture.html")
    # MathJax (local copy) typesets the inline and display formulas and leaves no TeX source visible.
    page.wait_for_function("() => window.MathJax && MathJax.Hub && MathJax.Hub.queue.pending === 0 "
                           "&& document.querySelectorAll('.MathJax_CHTML').length >= 3", timeout=30_000)
    assert page.locator(".MJXc-display .MathJax_CHTML").count() >= 1
    assert page.evaluate(MATH_ERRORS) == []
    main_text = page.locator("main").inner_text()
    assert "\\frac" not in main_text and "$E = mc^2$" not in main_text
    # The saved widget state renders through the local widget manager, as it was when the notebook ran.
    slider = page.locator(".widget-slider", has_text="Layers")
    slider.wait_for(timeout=30_000)
    assert slider.locator(".widget-readout").inner_text().strip() == "7"
    assert page.locator(".fixture-total").inner_text() == "109,482,240"
    # The matplotlib figure and the markdown image (embedded from dot.png) both have pixels.
    assert page.locator(".jp-RenderedImage img").count() == 1
    assert page.locator('img[alt="a red dot"]').evaluate("i => i.src.startsWith('data:image/png;base64,')")
    assert _rendered_images(page) == 2
    # The index shows the goal typeset too.
    _shot(page, "fixture-chapter.png")
    page.goto(fixture_book_url + "index.html")
    page.wait_for_selector("ol.chapters .MathJax_CHTML", timeout=30_000)
    page.guard.check()


# ---------------------------------------------------------------------------------------------- the app


def _bert_parameters(V: int, P: int, T: int, d: int, f: int, L: int) -> int:
    """BertModel's parameter count by hand: embeddings + L encoder layers + pooler."""
    embeddings = V * d + P * d + T * d + 2 * d  # three tables and a LayerNorm
    attention = 4 * (d * d + d) + 2 * d  # q, k, v, output dense; LayerNorm
    feed_forward = (d * f + f) + (f * d + d) + 2 * d  # intermediate, output dense; LayerNorm
    return embeddings + L * (attention + feed_forward) + (d * d + d)


def test_the_formula_in_this_file_gives_bert_base():
    assert _bert_parameters(30522, 512, 2, 768, 3072, 12) == 109_482_240


def _set_int(control, value: int) -> None:
    """Type a value into an ipywidgets integer box or slider readout, as a user would."""
    box = control.locator("input")
    if box.count():
        box.first.fill(str(value))
        box.first.press("Enter")
    else:
        readout = control.locator(".widget-readout")
        readout.click()
        readout.press("Control+A")
        readout.type(str(value))
        readout.press("Enter")


def _answers(url: str) -> bool:
    """Whether an HTTP server answers at `url` (an error status counts; a refused connection does not)."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(url, timeout=5).close()
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def test_app_shows_the_calculator_updates_the_total_and_stops(browser, tmp_path):
    """`minibert app --port 0` (what `make app` runs, on a free port): prints its address; in the page, pick
    bert-large-uncased and read the total, change the layers and read it again; SIGTERM stops Voilà too."""
    import signal
    import time

    from playwright.sync_api import expect

    import minibert
    from minibert.config import BertConfig

    large = BertConfig.from_preset("bert-large-uncased")
    shape = dict(V=large.vocab_size, P=large.max_position_embeddings, T=large.type_vocab_size, d=large.hidden_size,
                 f=large.intermediate_size)
    expected = _bert_parameters(**shape, L=large.num_hidden_layers)
    assert expected == 335_141_888  # bert-large-uncased, as published
    if hasattr(minibert, "count_parameters"):
        counted = minibert.count_parameters(large)
        assert getattr(counted, "total", counted) == expected
    fewer = _bert_parameters(**shape, L=6)

    with running_app(tmp_path / "voila.log") as (process, url):
        context = None
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            guard = Guard(context)
            page = guard.watch(context.new_page())
            page.goto(url, timeout=120_000)
            preset = page.locator(".widget-dropdown", has=page.locator("label", has_text=re.compile(r"^\s*Preset\s*$")))
            preset.locator("select").wait_for(timeout=120_000)
            assert "parameter_calculator" not in page.locator("body").inner_text(), "Voilà must hide the code"
            preset.locator("select").select_option("bert-large-uncased")
            total = page.locator(".minibert-total")
            expect(total).to_have_text(f"{expected:,}", timeout=30_000)
            _shot(page, "app-bert-large-uncased.png")
            layers = page.locator(".widget-inline-hbox", has=page.locator("label", has_text=re.compile(r"^\s*Layers\s*$")))
            _set_int(layers.first, 6)
            expect(total).to_have_text(f"{fewer:,}", timeout=30_000)
            _shot(page, "app-6-layers.png")
            guard.check()
            context.close()
            context = None
            # Stopping the command stops Voilà (its own process group) and the kernel with it.
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
            deadline = time.monotonic() + 15
            while _answers(url + "favicon.ico") and time.monotonic() < deadline:
                time.sleep(0.3)
            assert not _answers(url + "favicon.ico"), f"Voilà still answers at {url} after `minibert app` stopped"
        finally:
            if context is not None:
                context.close()


# ---------------------------------------------------------------------------------------------- the slides

# Walks every slide of a deck inside the page (one call per deck): shows it, waits for MathJax, and measures
# the box holding everything visible on it. A box that scrolls (code, outputs) counts as its own outline, as
# its content is reached by scrolling inside it; a box that hides what overflows it is reported as cut off.
MEASURE_SLIDES = """async () => {
  Reveal.configure({transition: 'none', backgroundTransition: 'none'});
  const typeset = () => new Promise(done => (window.MathJax && MathJax.Hub) ? MathJax.Hub.Queue(done) : done());
  const results = [];
  for (const slide of Reveal.getSlides()) {
    const at = Reveal.getIndices(slide);
    Reveal.slide(at.h, at.v || 0);
    if (slide.querySelector('.MathJax_CHTML, .MathJax_Preview, script[type^="math/tex"]')) await typeset();
    await new Promise(done => requestAnimationFrame(() => done()));
    let box = null;
    const cut = [];
    const walk = (el) => {
      for (const child of el.children) {
        const style = getComputedStyle(child);
        if (child.matches('aside.notes, script, style') || style.display === 'none') continue;
        const r = child.getBoundingClientRect();
        if (r.width || r.height) {
          box = box ? {left: Math.min(box.left, r.left), top: Math.min(box.top, r.top),
                       right: Math.max(box.right, r.right), bottom: Math.max(box.bottom, r.bottom)}
                    : {left: r.left, top: r.top, right: r.right, bottom: r.bottom};
        }
        if (style.overflowX === 'visible' && style.overflowY === 'visible') { walk(child); continue; }
        const hides = v => v === 'hidden' || v === 'clip';
        if ((hides(style.overflowX) && child.scrollWidth > child.clientWidth + 1)
            || (hides(style.overflowY) && child.scrollHeight > child.clientHeight + 1)) {
          cut.push(child.tagName.toLowerCase() + '.' + [...child.classList].join('.'));
        }
      }
    };
    walk(slide);
    const first = (slide.querySelector('h1, h2, h3, p, pre') || slide).innerText.trim().split('\\n')[0];
    results.push({h: at.h, v: at.v || 0, box, cut, first: first.slice(0, 70),
                  notes: slide.querySelectorAll(':scope > aside.notes, :scope aside.notes').length});
  }
  return results;
}"""
SLIDE_W, SLIDE_H = 1280, 720


@pytest.fixture(scope="module")
def slide_decks(serve, node_modules):
    """Every chapter's deck, built once and served from 127.0.0.1: {chapter stem: URL}."""
    from test_slides import built_decks  # one build for both files (tests/ is on sys.path under pytest)

    decks, out = built_decks()
    base = serve(out)
    return {path.name.removesuffix(".slides.html"): base + path.name for path in decks}


def _measure_deck(browser, url: str, name: str) -> tuple[list[dict], list[str]]:
    """(every slide's measurements, the problems found) for the deck at `url`, in one page at 1280x720."""
    context = browser.new_context(viewport={"width": SLIDE_W, "height": SLIDE_H})
    try:
        guard = Guard(context)
        page = guard.watch(context.new_page())
        page.goto(url)
        page.wait_for_function("() => window.Reveal && Reveal.isReady()", timeout=30_000)
        slides = page.evaluate(MEASURE_SLIDES)
        guard.check()
    finally:
        context.close()
    problems = []
    for s in slides:
        where = f"{name} deck, slide {s['h']}/{s['v']} ({s['first']!r})"
        box = s["box"]
        if box and (box["left"] < -1 or box["top"] < -1 or box["right"] > SLIDE_W + 1 or box["bottom"] > SLIDE_H + 1):
            problems.append(f"{where}: its content spans x {box['left']:.0f}..{box['right']:.0f}, "
                            f"y {box['top']:.0f}..{box['bottom']:.0f}; the screen is {SLIDE_W}x{SLIDE_H}")
        if s["cut"]:
            problems.append(f"{where}: content cut off in {s['cut']}")
    return slides, problems


@pytest.mark.parametrize("chapter", BOOK.chapters, ids=[c.stem for c in BOOK.chapters])
def test_every_slide_fits_a_1280x720_screen(browser, slide_decks, chapter):
    """Each slide of the deck, shown in Chromium at 1280x720 (a projector): everything on it lies inside the
    screen, and nothing is cut off; long code and outputs scroll inside their own boxes. Most slides carry
    speaker notes."""
    import time

    start = time.perf_counter()
    slides, problems = _measure_deck(browser, slide_decks[chapter.stem], chapter.stem)
    print(f"\n{chapter.stem}: {len(slides)} slides measured in {time.perf_counter() - start:.1f} s")
    assert len(slides) >= 3
    assert not problems, "\n".join(problems)
    with_notes = sum(s["notes"] > 0 for s in slides)
    assert with_notes >= len(slides) // 3, f"{chapter.stem}: speaker notes on only {with_notes} of {len(slides)} slides"


def test_the_slide_walk_names_a_slide_that_overflows(browser, serve, tmp_path, node_modules):
    """The measurement catches what the build cannot foresee: a 1500 px block written as raw HTML."""
    from minibert.book.slides import build_slides

    cells = [nbformat.v4.new_markdown_cell("# 00 · Demo\n\nIntro."),
             nbformat.v4.new_markdown_cell("## Too tall\n\n<div style=\"height:1500px\">a tall block</div>"),
             nbformat.v4.new_markdown_cell("## Fine\n\nShort.")]
    for cell in cells:
        cell.metadata["slideshow"] = {"slide_type": "slide"}
    (tmp_path / "notebooks").mkdir()
    nbformat.write(nbformat.v4.new_notebook(cells=cells), tmp_path / "notebooks" / "00_demo.ipynb")
    (tmp_path / "book.toml").write_text(
        '[book]\ntitle = "Demo"\nauthors = ["A"]\nlanguage = "en"\ndescription = "d"\n\n'
        '[[chapters]]\nnotebook = "notebooks/00_demo.ipynb"\ntitle = "Demo"\nmodule = "minibert/demo.py"\n')
    [deck] = build_slides(load_book(tmp_path), load_book(tmp_path).chapters, tmp_path / "out",
                          node_modules=ROOT / "node_modules")
    slides, problems = _measure_deck(browser, serve(tmp_path / "out") + deck.name, "00_demo")
    assert len(slides) == 3
    assert len(problems) == 1 and problems[0].startswith("00_demo deck, slide 1/0 ('Too tall')"), problems
    assert "the screen is 1280x720" in problems[0]
