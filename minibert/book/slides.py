"""Reveal.js slide decks of the chapters, rendered with nbconvert's SlidesExporter, fully offline.

A deck is built from a chapter's stored outputs, with the solutions taken out (the student version of
the exercise cells), so a teacher can present it to the class. Cells choose their place with the cell
metadata `slideshow.slide_type` (slide, subslide, fragment, skip, notes, -). A chapter without any
slide metadata gets a default deck: the title, every `## section`, every figure and every exercise
prompt, each on its own slide. Cells whose output is a picture show the picture without its code; an
interactive widget (which needs a kernel) is replaced by a note saying to run the cell in JupyterLab.

reveal.js and MathJax 2 come from the npm packages `reveal.js` and `mathjax` that the set-up installs into
node_modules/ (package.json, `npm ci`); they are copied next to the decks, so the folder works without a network.
When they are missing, `SlidesError` says what to install instead of writing a deck that cannot load.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from .mirror import _write_atomic
from .project import Book, BookError, Chapter
from .student import student_notebook

ASSETS = "_assets"
FIGURE_MIME = ("image/png", "image/svg+xml", "image/jpeg")
HIDE_INPUT_TAG = "minibert-slides-hide-input"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = "<p><em>An interactive widget: run this cell in JupyterLab to use it.</em></p>"
SLIDE_TYPES = {"slide", "subslide", "fragment", "skip", "notes", "-"}
INSTALL = ("install them with `npm ci` in the course repository (it reads package.json; needs Node.js "
           "and npm, e.g. `sudo apt-get install npm` on Debian/Ubuntu), then run `make slides` again")


class SlidesError(BookError):
    """The slides cannot be built: a tool is missing or a notebook's slide metadata is wrong."""


# MathJax 2 (what nbconvert's templates configure; the version package.json pins) trimmed to TeX input and
# CommonHTML output with its woff fonts: files and folders, relative to node_modules/mathjax.
MATHJAX_PARTS = ("LICENSE", "MathJax.js", "config/TeX-AMS_CHTML-full.js", "config/Safe.js", "config/local",
                 "extensions", "jax/element", "jax/input/TeX", "jax/output/CommonHTML", "jax/output/PreviewHTML",
                 "fonts/HTML-CSS/TeX/woff", "localization/en")
MATHJAX_URL = f"{ASSETS}/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe"


@dataclass(frozen=True)
class Assets:
    """The offline copies of reveal.js and MathJax: (source, path under _assets/) pairs, files or folders."""

    parts: tuple[tuple[Path, str], ...]
    reveal_js: str  # URLs relative to a deck
    reveal_notes: str


def find_assets(node_modules: Path) -> Assets:
    """Locate reveal.js (4, 5 or 6) and MathJax 2 in node_modules; a SlidesError says what is missing."""
    reveal, mathjax = node_modules / "reveal.js", node_modules / "mathjax"
    missing = []
    notes = next((p for p in (reveal / "plugin" / "notes" / "notes.js", reveal / "dist" / "plugin" / "notes.js")
                  if p.is_file()), None)
    if not (reveal / "dist" / "reveal.js").is_file() or notes is None:
        missing.append(f"reveal.js (npm package `reveal.js`, expected {reveal / 'dist' / 'reveal.js'} and its notes "
                       f"plugin)")
    if not (mathjax / "MathJax.js").is_file() or not (mathjax / "config" / "TeX-AMS_CHTML-full.js").is_file():
        missing.append(f"MathJax 2 (npm package `mathjax` version 2, expected {mathjax / 'MathJax.js'})")
    if missing:
        if shutil.which("npm") is None:
            how = ("Node.js's npm is not installed: install it (`sudo apt-get install npm` on Debian/Ubuntu, or "
                   "from nodejs.org), then run `npm ci` in the course repository and `make slides` again")
        else:
            how = INSTALL
        raise SlidesError("the slides need local copies of reveal.js and MathJax, and these are missing: "
                          + "; ".join(missing) + f". To get them, {how}. No deck was written.")
    notes_rel = notes.relative_to(reveal).as_posix()
    theme = reveal / "dist" / "theme"
    parts = [(reveal / "dist" / "reveal.js", "reveal.js/dist/reveal.js"),
             (reveal / "dist" / "reveal.css", "reveal.js/dist/reveal.css"),
             (theme / "white.css", "reveal.js/dist/theme/white.css"),
             (theme / "fonts", "reveal.js/dist/theme/fonts"),
             (notes, f"reveal.js/{notes_rel}"),
             (reveal / "LICENSE", "reveal.js/LICENSE")]
    parts += [(mathjax / part, f"mathjax/{part}") for part in MATHJAX_PARTS]
    return Assets(tuple(parts), reveal_js=f"{ASSETS}/reveal.js/dist/reveal.js",
                  reveal_notes=f"{ASSETS}/reveal.js/{notes_rel}")


# Extends nbconvert's reveal template with no CDN: no jQuery, RequireJS, Mermaid or widget manager; reveal.js
# as plain scripts from _assets/; MathJax 2 from _assets/ through the parent template's `mathjax_url`.
TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{% block footer_js %}
<script src="{{ resources.minibert.reveal_js }}"></script>
<script src="{{ resources.minibert.reveal_notes }}"></script>
<script>
Reveal.initialize({
  controls: true, progress: true, history: true, slideNumber: 'c/t', transition: 'slide',
  width: 1280, height: 800, margin: 0.04,
  plugins: [RevealNotes]
});
Reveal.on('slidechanged', function () {
  if (window.MathJax && MathJax.Hub) { MathJax.Hub.Queue(['Rerender', MathJax.Hub, Reveal.getCurrentSlide()]); }
});
</script>
{% endblock footer_js %}
"""


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def has_figure(cell) -> bool:
    return cell.get("cell_type") == "code" and any(
        any(m in out.get("data", {}) for m in FIGURE_MIME) for out in cell.get("outputs", []))


def has_slide_metadata(nb) -> bool:
    return any("slide_type" in cell.get("metadata", {}).get("slideshow", {}) for cell in nb["cells"])


def default_slide_types(nb, prompt_cells: set[int]) -> list[str]:
    """The deck for a chapter without slide metadata: title, `##` sections, figures, exercise prompts."""
    types = []
    for i, cell in enumerate(nb["cells"]):
        first = _source(cell).lstrip().split("\n", 1)[0]
        is_section = cell["cell_type"] == "markdown" and first.startswith(("# ", "## "))
        keep = (i == 0 or is_section or has_figure(cell) or i in prompt_cells)
        types.append("slide" if keep else "skip")
    return types


def slide_notebook(book: Book, chapter: Chapter):
    """The notebook a deck is rendered from: solutions out, slide types set, figures without their code."""
    import nbformat

    student = student_notebook(book, chapter)
    nb = nbformat.reads(student.text, as_version=4)
    nb.metadata.pop("widgets", None)  # no widget manager on a slide: a live widget needs a kernel anyway
    for cell in nb.cells:
        for i, out in enumerate(cell.get("outputs", [])):
            if WIDGET_MIME in out.get("data", {}):
                cell.outputs[i] = nbformat.v4.new_output("display_data", data={"text/html": WIDGET_NOTE})
    nb.metadata["title"] = f"{chapter.number:02d} · {chapter.title}"
    for i, cell in enumerate(nb.cells):
        slide_type = cell.metadata.get("slideshow", {}).get("slide_type")
        if slide_type is not None and slide_type not in SLIDE_TYPES:
            raise SlidesError(f"{chapter.notebook}, cell {i + 1}: slideshow.slide_type is {slide_type!r}; expected "
                              f"one of {sorted(SLIDE_TYPES)}")
    if not has_slide_metadata(nb):
        prompts = {e.prompt_cell for e in student.exercises}
        for cell, slide_type in zip(nb.cells, default_slide_types(nb, prompts)):
            cell.metadata["slideshow"] = {"slide_type": slide_type}
    for cell in nb.cells:
        if has_figure(cell):
            cell.metadata.setdefault("tags", []).append(HIDE_INPUT_TAG)
    return nb


def deck_name(chapter: Chapter) -> str:
    return f"{chapter.stem}.slides.html"


def render_deck(nb, assets: Assets) -> str:
    from jinja2 import DictLoader
    from nbconvert import SlidesExporter
    from nbconvert.preprocessors import TagRemovePreprocessor
    from traitlets.config import Config

    config = Config()
    config.TagRemovePreprocessor.remove_input_tags = {HIDE_INPUT_TAG}
    config.TagRemovePreprocessor.enabled = True
    exporter = SlidesExporter(config=config, extra_loaders=[DictLoader({"minibert_slides.html.j2": TEMPLATE})],
                              template_file="minibert_slides.html.j2", reveal_url_prefix=f"{ASSETS}/reveal.js",
                              reveal_theme="white", mathjax_url=MATHJAX_URL)
    exporter.register_preprocessor(TagRemovePreprocessor(config=config), enabled=True)
    resources = {"minibert": {"reveal_js": assets.reveal_js, "reveal_notes": assets.reveal_notes}}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    return body


def _copy_assets(assets: Assets, out: Path) -> None:
    base = out / ASSETS
    for src, rel in assets.parts:
        if src.is_dir():
            shutil.copytree(src, base / rel, dirs_exist_ok=True)
        elif src.is_file():
            (base / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, base / rel)


def build_slides(book: Book, chapters: list[Chapter] | tuple[Chapter, ...], out: Path | None = None,
                 node_modules: Path | None = None) -> list[Path]:
    """Render each chapter's deck into `out` (default _build/slides) with its offline assets; return the decks.

    `out` must be new, empty or an earlier slides folder (minibert.book.outdir). Decks of other chapters
    already there are kept; the folder is replaced only when every deck was written.
    """
    from .outdir import check_output_folder, output_folder

    out = Path(out) if out else book.path("_build/slides")
    check_output_folder(out, "slides", book)  # refuse at once, before the slow part
    assets = find_assets(Path(node_modules) if node_modules else book.path("node_modules"))
    decks = {deck_name(c): render_deck(slide_notebook(book, c), assets) for c in chapters}
    with output_folder(book, out, "slides", keep=True) as stage:
        _copy_assets(assets, stage)
        for name, html in decks.items():
            _write_atomic(stage / name, html)
    return [out / name for name in decks]
