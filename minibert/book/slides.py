"""Reveal.js slide decks of the chapters, rendered with nbconvert's SlidesExporter, fully offline.

A deck is built from a chapter's stored outputs, with the solutions taken out (the student version of
the exercise cells), so a teacher can present it to the class. Cells choose their place with the cell
metadata `slideshow.slide_type` (slide, subslide, fragment, skip, notes, -). A chapter without any
slide metadata gets a default deck: the title, every `## section`, every figure and every exercise
prompt, each on its own slide. Cells whose output is a picture show the picture without its code; an
interactive widget (which needs a kernel) is replaced by a note saying to run the cell in JupyterLab, and
chapter 07's calculators by the address of the live calculator that `minibert app` serves.

Every slide fits a 1280x720 projector (`fit_deck`; tests/test_browser.py measures each slide in Chromium): a
slide that would overflow continues on a new vertical slide, long paragraphs show their first sentence,
code and outputs scroll inside fixed boxes, and code cells over CODE_LINES_SHOWN lines are left out with a
pointer to the notebook. The prose of each slide goes into its speaker notes (`<aside class="notes">`,
shown by reveal.js's presenter view: press S).

reveal.js and MathJax 2 come from the npm packages `reveal.js` and `mathjax` that the set-up installs into
node_modules/ (package.json, `npm ci`); they are copied next to the decks, so the folder works without a network.
When they are missing, `SlidesError` says what to install instead of writing a deck that cannot load.
"""

from __future__ import annotations

import html
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from .mirror import _write_atomic
from .project import Book, BookError, Chapter
from .student import _PROMPT as _EXERCISE, student_notebook

ASSETS = "_assets"
FIGURE_MIME = ("image/png", "image/svg+xml", "image/jpeg")
HIDE_INPUT_TAG = "minibert-slides-hide-input"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = "<p><em>An interactive widget: run this cell in JupyterLab to use it.</em></p>"
# Chapter 07's calculators (ParameterCalculator, CompareCalculator) also run as a web page: `minibert app`.
CALCULATOR_NOTE = ("<p><em>The live calculator:</em> start it with <code>minibert app</code> (or <code>make app</code>) "
                   "in the course folder; it prints its address, by default <a href=\"{url}\">{url}</a>. "
                   "In JupyterLab, run this cell of the notebook.</p>")
SLIDE_TYPES = {"slide", "subslide", "fragment", "skip", "notes", "-"}
# The screen a deck is made for (a 1280x720 projector) and the boxes that scroll inside a slide.
WIDTH, HEIGHT = 1280, 720
CODE_MAX_PX, OUTPUT_MAX_PX, IMAGE_MAX_PX = 300, 200, 380
CODE_LINES_SHOWN = 40  # a longer code cell is left out of its slide, with a pointer to the notebook
PROSE_CHARS = 240  # a longer paragraph shows its first sentence; the whole paragraph goes to the speaker notes
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
{% block html_head_css %}
<style type="text/css">
/* minibert: slides sized for a 1280x720 projector; what could run off a slide scrolls inside its box.
   Selectors start with `.reveal .slides` to win over the theme's stylesheet, which loads after this one. */
:root { --jp-ui-font-size1: 22px; --jp-content-font-size1: 22px; --jp-code-font-size: 17px; }
.reveal .slides > section, .reveal .slides > section > section { padding: 14px 30px; box-sizing: border-box; }
.reveal .slides > section.stack { padding: 0; }
.reveal .slides h1, .reveal .slides h2, .reveal .slides h3, .reveal .slides h4 { text-transform: none; line-height: 1.2; }
.reveal .slides h1 { font-size: 44px; margin: 0 0 12px; }
.reveal .slides h2 { font-size: 34px; margin: 0 0 10px; }
.reveal .slides h3, .reveal .slides h4 { font-size: 27px; margin: 0 0 8px; }
.reveal .slides p, .reveal .slides li { line-height: 1.35; }
.reveal .slides p { margin: 0 0 10px; }
.reveal .slides .jp-InputPrompt, .reveal .slides .jp-OutputPrompt { display: none; }
.reveal .slides .jp-Cell { padding: 2px 0; }
.reveal .slides .jp-OutputArea-child, .reveal .slides .jp-InputArea { display: block; }
.reveal .slides div.highlight > pre, .reveal .slides .jp-OutputArea-output pre {
  white-space: pre-wrap; overflow-wrap: anywhere; font-size: var(--jp-code-font-size); line-height: 1.3; width: auto; }
.reveal .slides .jp-InputArea-editor { display: block; max-height: {{ resources.minibert.code_max_px }}px;
  overflow: auto; }
.reveal .slides .jp-OutputArea-output { display: block; max-height: {{ resources.minibert.output_max_px }}px;
  overflow: auto; width: auto; }
.reveal .slides .jp-OutputArea-output.jp-RenderedImage { max-height: none; overflow: visible; }
.reveal .slides .jp-RenderedImage img, .reveal .slides .jp-RenderedMarkdown img, .reveal .slides .jp-RenderedSVG svg {
  max-height: {{ resources.minibert.image_max_px }}px; width: auto; max-width: 100%; }
.reveal .slides table { font-size: 19px; }
.reveal .slides .minibert-pointer { color: #555; font-style: italic; }
.reveal .slides p.minibert-continued { color: #777; font-size: 18px; margin: 0 0 6px; }
.reveal .slides .jp-RenderedHTMLCommon { overflow-wrap: anywhere; }
</style>
{% endblock html_head_css %}
{% block footer_js %}
<script src="{{ resources.minibert.reveal_js }}"></script>
<script src="{{ resources.minibert.reveal_notes }}"></script>
<script>
Reveal.initialize({
  controls: true, progress: true, history: true, slideNumber: 'c/t', transition: 'slide',
  width: {{ resources.minibert.width }}, height: {{ resources.minibert.height }}, margin: 0, center: false,
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
                cell.outputs[i] = nbformat.v4.new_output("display_data", data={"text/html": widget_note(out)})
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
    return fit_deck(nb, Path(chapter.notebook).name)


def widget_note(output) -> str:
    """What a slide shows for a widget: the app's address for chapter 07's calculators, else a note."""
    from .app import DEFAULT_PORT, app_url

    plain = output.get("data", {}).get("text/plain", "")
    plain = "".join(plain) if isinstance(plain, list) else plain
    if re.match(r"\w*Calculator\(", plain):
        return CALCULATOR_NOTE.format(url=app_url(DEFAULT_PORT))
    return WIDGET_NOTE


# ---------------------------------------------------------------------------------------------- fitting
# Every slide must fit the 1280x720 screen (tests/test_browser.py measures each one in Chromium). At build
# time each cell's height is estimated from its text; a slide that would overflow continues on a new
# (vertical) slide at the cell that does not fit, a long markdown cell is cut between its blocks, a long
# paragraph shows its first sentence (the whole prose goes to the speaker notes), code and outputs scroll
# inside boxes of fixed height, and a code cell over CODE_LINES_SHOWN lines is left out with a pointer to
# the notebook.

BUDGET_PX = HEIGHT - 28 - 40  # the slide's padding, and a margin for the estimate's errors
_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING_PX = {1: (56 + 12, 46), 2: (44 + 10, 62), 3: (36 + 8, 80)}  # (px per line, characters per line)
TEXT_LINE_PX, TEXT_CHARS = 30, 92
CONTINUED_PX = 36  # the "<section> (continued)" line on top of a slide that continues one
CODE_LINE_PX, CODE_CHARS = 22, 105


def _slide_type(cell) -> str:
    return cell.metadata.get("slideshow", {}).get("slide_type", "-")


def _set_type(cell, slide_type: str) -> None:
    cell.metadata.setdefault("slideshow", {})["slide_type"] = slide_type


def md_blocks(source: str) -> list[str]:
    """A markdown cell's blocks: paragraphs, lists, tables, headings; fenced code and $$ math kept whole."""
    blocks, current, fence, math = [], [], False, False
    for line in source.split("\n"):
        if _FENCE.match(line):
            fence = not fence
        elif not fence and line.strip().startswith("$$") and not (line.strip().endswith("$$") and len(line.strip()) > 2):
            math = not math
        if not line.strip() and not fence and not math:
            if current:
                blocks.append("\n".join(current))
            current = []
        elif re.match(r"^\s{0,3}#{1,6}\s", line) and not fence and not math:
            if current:
                blocks.append("\n".join(current))
            blocks.append(line)
            current = []
        else:
            current.append(line)
    if current:
        blocks.append("\n".join(current))
    return blocks


def is_paragraph(block: str) -> bool:
    first = block.lstrip()
    return not re.match(r"(#{1,6}\s|[-*+]\s|\d+[.)]\s|\||>|\$\$|```|~~~|!\[|<)", first)


def _masked(text: str) -> str:
    """`text` with code spans, math and link targets blanked out (same length), so sentences split on prose."""
    return re.sub(r"(`+).*?\1|\$[^$]*\$|\]\([^)]*\)", lambda m: "x" * len(m.group()), text, flags=re.S)


def first_sentence(paragraph: str) -> str:
    m = re.search(r"[.!?:](?=\s+[A-Z0-9\"“(*`\[$])", _masked(paragraph))
    return paragraph[:m.end()] if m else paragraph


def shorten(block: str) -> str:
    """A paragraph over PROSE_CHARS characters as its first sentence and an ellipsis; other blocks, and exercise
    prompts (the class needs them whole), as they are."""
    if not is_paragraph(block) or len(block) <= PROSE_CHARS or _EXERCISE.search(block):
        return block
    head = first_sentence(block)
    if len(head) >= len(block):
        return block
    return head + ("**" if head.count("**") % 2 else "") + " …"


def _table_rows(block: str) -> list[str]:
    """A markdown table's rows without its |---| rule."""
    return [ln for ln in block.split("\n") if ln.strip() and not re.match(r"^\s*\|?[\s:|-]+$", ln)]


def _row_px(row: str) -> int:
    from .student import plain_text

    cells = [c for c in re.split(r"(?<!\\)\|", row.strip().strip("|"))]
    chars = max(8, int(TEXT_CHARS * 1.1) // max(len(cells), 1))
    return 12 + 24 * max(-(-len(plain_text(c)) // chars) or 1 for c in cells)


def split_table(block: str, budget: int) -> list[str]:
    """A markdown table too tall for one slide as several tables, each with the header row and rule."""
    lines = [ln for ln in block.split("\n") if ln.strip()]
    if len(lines) < 3 or not re.match(r"^\s*\|?[\s:|-]+$", lines[1]):
        return [block]
    head, body = lines[:2], lines[2:]
    parts, current, used = [], [], 16 + _row_px(head[0])
    for row in body:
        if current and used + _row_px(row) > budget:
            parts.append("\n".join(head + current))
            current, used = [], 16 + _row_px(head[0])
        current.append(row)
        used += _row_px(row)
    parts.append("\n".join(head + current))
    return parts


_ITEM = re.compile(r"^\s{0,3}(?:[-*+]|\d+[.)])\s")


def split_list(block: str, budget: int) -> list[str]:
    """A markdown list too tall for one slide as several lists, cut between items (numbers kept)."""
    items: list[list[str]] = []
    for line in block.split("\n"):
        if _ITEM.match(line) or not items:
            items.append([line])
        else:
            items[-1].append(line)
    parts, current = [], []
    for item in ("\n".join(lines) for lines in items):
        if current and block_px("\n".join(current + [item])) > budget:
            parts.append("\n".join(current))
            current = []
        current.append(item)
    parts.append("\n".join(current))
    return parts


def split_block(block: str, budget: int) -> list[str]:
    """A table or list taller than `budget` cut into parts that fit; any other block as it is."""
    if block_px(block) <= budget:
        return [block]
    if block.lstrip().startswith("|"):
        return split_table(block, budget)
    if _ITEM.match(block):
        return split_list(block, budget)
    return [block]


def _wrapped_lines(text: str, chars: int) -> int:
    return sum(max(1, -(-len(line) // chars)) for line in text.split("\n"))


def block_px(block: str) -> int:
    """The estimated height of one markdown block on a slide."""
    from .student import plain_text

    stripped = block.lstrip()
    heading = re.match(r"(#{1,6})\s+(.*)", stripped)
    if heading:
        line_px, chars = _HEADING_PX.get(len(heading.group(1)), _HEADING_PX[3])
        return _wrapped_lines(plain_text(heading.group(2)), chars) * line_px
    if stripped.startswith("$$"):
        return 30 + 50 * max(1, block.count("\\\\") + 1)
    if stripped.startswith(("```", "~~~")):
        return 20 + 24 * (block.count("\n") - 1)
    if stripped.startswith("|"):
        return 16 + sum(_row_px(row) for row in _table_rows(block))
    if stripped.startswith("!["):
        return IMAGE_MAX_PX + 10
    lines = 0
    for line in block.split("\n"):
        text = plain_text(line)
        lines += max(1, -(-len(text) // TEXT_CHARS)) if text else 0
    return 12 + TEXT_LINE_PX * max(lines, 1) + 8 * len(re.findall(r"\$[^$]+\$", block))


def _png_height(b64: str) -> int | None:
    import base64
    import struct

    try:
        head = base64.b64decode(b64[:64])
    except ValueError:
        return None
    if head[:8] != b"\x89PNG\r\n\x1a\n" or len(head) < 24:
        return None
    width, height = struct.unpack(">II", head[16:24])
    return int(height * min(1.0, (WIDTH - 60) / max(width, 1)))


def output_px(output) -> int:
    data = output.get("data", {})
    if any(m in data for m in FIGURE_MIME):
        png = data.get("image/png")
        natural = _png_height("".join(png) if isinstance(png, list) else png) if png else None
        return 50 + min(IMAGE_MAX_PX, natural or IMAGE_MAX_PX)
    if output.get("output_type") == "stream":
        text = output.get("text", "")
    elif output.get("output_type") == "error":
        text = "\n".join(output.get("traceback", []))
    elif "text/html" in data:
        markup = data["text/html"]
        markup = "".join(markup) if isinstance(markup, list) else markup
        words = len(html.unescape(re.sub(r"<[^>]+>", "", markup)).strip())
        lines = max(1, -(-words // TEXT_CHARS)) + markup.count("<tr")
        return 10 + min(OUTPUT_MAX_PX, TEXT_LINE_PX * lines)
    else:
        text = data.get("text/plain", "")
    text = "".join(text) if isinstance(text, list) else text
    return 10 + min(OUTPUT_MAX_PX, CODE_LINE_PX * _wrapped_lines(text.rstrip("\n"), CODE_CHARS))


def cell_px(cell) -> int:
    """The estimated height of a cell on its slide (0 for skipped cells and notes)."""
    if _slide_type(cell) in ("skip", "notes"):
        return 0
    if cell.cell_type == "markdown":
        return 6 + sum(block_px(b) for b in md_blocks(cell.source))
    if cell.cell_type != "code":
        return 0
    shown = not cell.metadata.get("transient", {}).get("remove_source") and \
        HIDE_INPUT_TAG not in cell.metadata.get("tags", [])
    code = 12 + min(CODE_MAX_PX, CODE_LINE_PX * _wrapped_lines(cell.source, CODE_CHARS)) if shown else 0
    return 6 + code + sum(output_px(o) for o in cell.get("outputs", []))


def _notes(prose: list[str]):
    import nbformat

    cell = nbformat.v4.new_markdown_cell("\n\n".join(prose))
    _set_type(cell, "notes")
    return cell


def fit_deck(nb, notebook: str):
    """The deck's cells rearranged so that every slide fits (see the comment above); `nb` is changed in place."""
    import nbformat

    cells = []
    for index, cell in enumerate(nb.cells):
        slide_type = _slide_type(cell)
        if slide_type in ("skip", "notes"):
            cells.append(cell)
            continue
        if cell.cell_type == "code" and len([ln for ln in cell.source.split("\n") if ln.strip()]) > CODE_LINES_SHOWN:
            lines = len(cell.source.split("\n"))
            pointer = nbformat.v4.new_markdown_cell(
                f'<p class="minibert-pointer">The code of this step ({lines} lines) is in the notebook '
                f"<code>{html.escape(notebook)}</code>, cell {index + 1}.</p>")
            _set_type(pointer, slide_type)
            cell.metadata.setdefault("transient", {})["remove_source"] = True
            _set_type(cell, "-" if cell.get("outputs") else "skip")
            cells += [pointer, cell]
            continue
        if cell.cell_type != "markdown":
            cells.append(cell)
            continue
        # Markdown: blocks grouped into cells that each fit, long paragraphs shortened, the prose in the notes.
        chunks: list[list[str]] = [[]]
        used = 0
        blocks = [part for b in md_blocks(cell.source) for part in split_block(b, BUDGET_PX - 60)]
        for block in blocks:
            px = block_px(shorten(block))
            if chunks[-1] and used + px > BUDGET_PX:
                chunks.append([])
                used = 0
            chunks[-1].append(block)
            used += px
        for k, chunk in enumerate(chunks):
            part = nbformat.v4.new_markdown_cell("\n\n".join(shorten(b) for b in chunk))
            part.metadata = nbformat.from_dict({**cell.metadata, "slideshow": {"slide_type": slide_type if k == 0 else "-"}})
            if k == 0 and "id" in cell:
                part.id = cell.id
            cells.append(part)
            prose = [b for b in chunk if is_paragraph(b)]
            if prose:
                cells.append(_notes(prose))
    # Then a slide that would overflow continues on a new vertical slide at the first cell that does not fit,
    # under a line naming the section it continues.
    from .student import plain_text

    fitted, used, heading = [], 0, None
    for cell in cells:
        slide_type = _slide_type(cell)
        px = cell_px(cell)
        starts_with_heading = cell.cell_type == "markdown" and re.match(r"\s{0,3}#{1,6}\s", cell.source)
        if slide_type in ("slide", "subslide"):
            used = px
        elif px and used and used + px > BUDGET_PX:
            if heading and not starts_with_heading:
                label = nbformat.v4.new_markdown_cell(
                    f'<p class="minibert-continued">{html.escape(heading)} (continued)</p>')
                _set_type(label, "subslide")
                fitted.append(label)
                used = CONTINUED_PX + px
            else:
                _set_type(cell, "subslide")
                used = px
        else:
            used += px
        fitted.append(cell)
        if cell.cell_type == "markdown" and slide_type not in ("skip", "notes"):
            titles = re.findall(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", cell.source, flags=re.M)
            heading = plain_text(titles[-1]) if titles else heading
    cells = fitted
    for k, cell in enumerate(cells):  # cells made here need ids distinct from each other's
        if not cell.get("id") or any(c.get("id") == cell.id for c in cells[:k]):
            cell.id = f"minibert-slide-{k}"
    nb.cells = cells
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
    resources = {"minibert": {"reveal_js": assets.reveal_js, "reveal_notes": assets.reveal_notes, "width": WIDTH,
                              "height": HEIGHT, "code_max_px": CODE_MAX_PX, "output_max_px": OUTPUT_MAX_PX,
                              "image_max_px": IMAGE_MAX_PX}}
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
