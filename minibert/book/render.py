"""Render the course to a static, offline site from the notebooks' stored (nbval-verified) outputs.

`build_book` writes `_build/book/`: `index.html` (the book's title, description and every chapter with its
learning goals), one page per chapter in book.toml order with previous/next links, and `glossary.html` (every
chapter's English-Chinese terms). Nothing on a page comes from the network: MathJax, require.js and the
Jupyter widget manager are copied into `_build/book/assets/` from `node_modules/` (installed by `npm ci`
in the set-up), and figures and markdown images are embedded in the pages.
"""

from __future__ import annotations

import html
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from .mirror import _write_atomic
from .project import Book, BookError, Chapter

TEMPLATES = Path(__file__).resolve().parent / "templates"
ASSETS = "assets"
# Where each page finds its scripts, relative to the page (all pages sit in one folder).
MATHJAX_URL = f"{ASSETS}/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe"
REQUIRE_JS_URL = f"{ASSETS}/require.js"
WIDGET_RENDERER_URL = f"{ASSETS}/html-manager/embed-amd.js"
GLOSSARY = "glossary.html"
INDEX = "index.html"
# The two editions: "self-study" folds each exercise's solution behind a "Show a solution" control after the
# exercise; "class" (for a class that does the exercises) carries no solution and no solution output at all.
SELF_STUDY, CLASS = "self-study", "class"
EDITIONS = (SELF_STUDY, CLASS)
DEFAULT_OUT = {SELF_STUDY: "_build/book", CLASS: "_build/book-class"}
FOLD = "minibert_fold"  # cell metadata the template reads: {"exercise": "4.1", "start": bool, "end": bool}

# (package in node_modules, files to copy as path prefixes relative to it, folder under assets/).
# MathJax 2 (what nbconvert's templates configure) is trimmed to TeX input and CommonHTML output with
# its woff fonts: about 6 MB instead of 70. The widget manager keeps its AMD bundle and its icon fonts.
_NPM_ASSETS = (
    ("mathjax", ("LICENSE", "MathJax.js", "config/TeX-AMS_CHTML-full.js", "config/Safe.js", "config/local/",
                 "extensions/", "jax/element/", "jax/input/TeX/", "jax/output/CommonHTML/",
                 "jax/output/PreviewHTML/", "fonts/HTML-CSS/TeX/woff/", "localization/en/"), "mathjax"),
    ("requirejs", ("require.js",), ""),
    ("@jupyter-widgets/html-manager", ("dist/embed-amd.js", "dist/*.woff", "dist/*.woff2", "dist/*.ttf",
                                       "dist/*.eot", "dist/*.svg"), "html-manager"),
)

_GOALS_LINE = re.compile(r"^\s*(?:#{1,6}\s*)?[*_]*\s*learning goals\b.{0,60}$", re.I)
_LIST_ITEM = re.compile(r"^\s{0,3}(?:\d+[.)]|[-*+])\s+(.*\S)\s*$")
_TERMS_HEADING = re.compile(r"^\s*#{2,6}\s*(?:key\s+)?(?:terms|glossary|术语)\b.*$", re.I)
_HEADING = re.compile(r"^\s*#{1,6}\s")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")


@dataclass(frozen=True)
class Term:
    english: str  # markdown, as written in the chapter's table
    chinese: str
    chapter: Chapter
    anchor: str = "Terms"  # id of the chapter's terms heading


def page_name(chapter: Chapter) -> str:
    return f"{chapter.stem}.html"


# ---------------------------------------------------------------------------------------------- reading


def _markdown_cells(nb) -> list[str]:
    return [cell.source for cell in nb.cells if cell.cell_type == "markdown"]


def learning_goals(nb) -> list[str]:
    """The markdown of each item of the "Learning goals" list (first one found); [] when there is none."""
    for source in _markdown_cells(nb):
        lines = source.splitlines()
        for i, line in enumerate(lines):
            if not _GOALS_LINE.match(line):
                continue
            goals: list[str] = []
            for nxt in lines[i + 1:]:
                item = _LIST_ITEM.match(nxt)
                if item:
                    goals.append(item.group(1))
                elif not nxt.strip():
                    continue  # blank lines may separate items
                elif goals and nxt[:1].isspace():  # an item's wrapped continuation line
                    goals[-1] += " " + nxt.strip()
                elif goals:
                    break  # the paragraph after the list
                # else: a sentence introducing the list; keep looking for its items
            if goals:
                return goals
    return []


def _split_row(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    cells = re.split(r"(?<!\\)\|", line)
    return [c.strip().replace("\\|", "|") for c in cells]


def terms_table(nb) -> list[tuple[str, str]]:
    """(English, Chinese) markdown pairs from the chapter's "## Terms" table; [] when there is none."""
    return _terms_section(nb)[1]


def terms_anchor(nb) -> str:
    """The id nbconvert gives the chapter's terms heading ("Terms" for "## Terms"), for links to it."""
    heading = _terms_section(nb)[0] or "Terms"
    text = re.sub(r"<[^>]+>", "", _inline_markdown(heading.lstrip("#").strip()))
    try:
        from nbconvert.filters.strings import _convert_header_id
    except ImportError:  # private in nbconvert; its rule as of 7.x
        from urllib.parse import quote

        return quote(html.unescape(text).replace(" ", "-"), safe="?/:@!$&'()*+,;=")
    return _convert_header_id(html.unescape(text))


def _terms_section(nb) -> tuple[str | None, list[tuple[str, str]]]:
    for source in _markdown_cells(nb):
        lines = source.splitlines()
        for i, line in enumerate(lines):
            if not _TERMS_HEADING.match(line):
                continue
            rows: list[list[str]] = []
            for nxt in lines[i + 1:]:
                if _HEADING.match(nxt):
                    break
                if nxt.strip().startswith("|"):
                    rows.append(_split_row(nxt))
                elif rows and nxt.strip():
                    break
            # rows[0] is the header (English | 中文), rows[1] the |---| rule.
            body = [r for r in rows[1:] if not _TABLE_RULE.match("|".join(r))] if rows else []
            pairs = [(r[0], r[1]) for r in body if len(r) >= 2 and r[0] and r[1]]
            if pairs:
                return line, pairs
    return None, []


# ---------------------------------------------------------------------------------------------- assets


def _wanted(rel: str, patterns: tuple[str, ...]) -> bool:
    from fnmatch import fnmatch

    return any(rel.startswith(p) if p.endswith("/") else (fnmatch(rel, p) if "*" in p else rel == p)
               for p in patterns)


def copy_assets(book: Book, out: Path, packages: tuple[str, ...] | None = None) -> list[Path]:
    """Copy MathJax, require.js and the widget manager (or only `packages` of them) from node_modules/ into
    out/assets/."""
    node_modules = book.path("node_modules")
    copied: list[Path] = []
    for package, patterns, target in _NPM_ASSETS:
        if packages is not None and package not in packages:
            continue
        src = node_modules / package
        if not (src / "package.json").is_file():
            raise BookError(f"the book's offline scripts are missing: {src} does not exist. Run `make setup` "
                            f"(it runs `npm ci` with Node.js) or `npm ci` in {book.root}")
        dest = out / ASSETS / target
        found = 0
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src).as_posix()
            if path.is_file() and _wanted(rel, patterns):
                # The widget manager's fonts sit next to its bundle, which finds them relative to itself.
                name = rel[len("dist/"):] if rel.startswith("dist/") else rel
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest / name)
                copied.append(dest / name)
                found += 1
        if not found:
            raise BookError(f"no files matching {patterns} in {src}; run `npm ci` in {book.root}")
    return copied


# ---------------------------------------------------------------------------------------------- pages


def _inline_markdown(text: str) -> str:
    """One line of markdown as inline HTML (no surrounding <p>)."""
    from nbconvert.filters.markdown import markdown2html_mistune

    rendered = markdown2html_mistune(text).strip()
    match = re.fullmatch(r"<p>(.*)</p>", rendered, flags=re.S)
    return match.group(1) if match else rendered


def _plain(markdown: str) -> str:
    return re.sub(r"[`*_]", "", markdown).strip()


def _nav(book: Book, i: int) -> str:
    chapters = book.chapters
    prev = (f'<a rel="prev" href="{page_name(chapters[i - 1])}">&larr; {chapters[i - 1].number:02d} '
            f'{html.escape(chapters[i - 1].title)}</a>' if i > 0 else "<span></span>")
    nxt = (f'<a rel="next" href="{page_name(chapters[i + 1])}">{chapters[i + 1].number:02d} '
           f'{html.escape(chapters[i + 1].title)} &rarr;</a>' if i + 1 < len(chapters) else "<span></span>")
    middle = f'<span class="middle"><a href="{INDEX}">Contents</a><a href="{GLOSSARY}">Glossary</a></span>'
    return f'<nav class="minibert-nav">{prev}{middle}{nxt}</nav>'


SITE_PAGE = """<!DOCTYPE html>
<html lang="{lang}"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">
<style>
body{{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem;
  line-height:1.55;color:#222}}
h1{{line-height:1.2}} a{{color:#1a5fb4;text-decoration:none}} a:hover{{text-decoration:underline}}
.muted{{color:#666}} nav.site{{display:flex;gap:1.2rem;font-size:.95rem;margin-bottom:1.5rem}}
ol.chapters{{list-style:none;padding:0}} ol.chapters>li{{margin:0 0 1.2rem;padding:.8rem 1rem;border:1px solid #e3e3e3;
  border-radius:.5rem}} ol.chapters h2{{font-size:1.15rem;margin:0 0 .3rem}} .num{{color:#888;
  font-variant-numeric:tabular-nums;margin-right:.4rem}} ul.goals{{margin:.2rem 0 0;padding-left:1.2rem}}
ul.goals li{{margin:.15rem 0}} table{{border-collapse:collapse;width:100%}} th,td{{text-align:left;
  padding:.35rem .6rem;border-bottom:1px solid #e3e3e3;vertical-align:top}} th{{background:#f6f6f6}}
code{{background:#f3f3f3;padding:0 .2em;border-radius:.2em}}
</style>{head}</head>
<body><nav class="site"><a href="{index}">Contents</a><a href="{glossary}">Glossary</a></nav>
{body}
</body></html>
"""


def _site_page(book: Book, title: str, body: str) -> str:
    # MathJax only where a page has math (a goal or a term written with $...$).
    head = ""
    if "$" in body or "\\(" in body:
        head = (f'<script type="text/x-mathjax-config">MathJax.Hub.Config({{tex2jax:{{inlineMath:[["$","$"],'
                f'["\\\\(","\\\\)"]],processEscapes:true}},messageStyle:"none"}});</script>'
                f'<script src="{MATHJAX_URL}"></script>')
    return SITE_PAGE.format(lang=html.escape(book.language), title=html.escape(title), head=head, index=INDEX,
                            glossary=GLOSSARY, body=body)


EDITION_NOTE = {
    SELF_STUDY: "Self-study edition: each exercise's solution is folded away under it; open "
                "\u201cShow a solution\u201d once you have tried.",
    CLASS: "Class edition: the exercises without their solutions.",
}


def render_index(book: Book, goals: dict[int, list[str]], edition: str = SELF_STUDY) -> str:
    items = []
    for chapter in book.chapters:
        chapter_goals = goals.get(chapter.number, [])
        goal_list = ("<ul class=\"goals\">" + "".join(f"<li>{_inline_markdown(g)}</li>" for g in chapter_goals)
                     + "</ul>") if chapter_goals else ""
        items.append(f'<li id="chapter-{chapter.number:02d}"><h2><span class="num">{chapter.number:02d}</span>'
                     f'<a href="{page_name(chapter)}">{html.escape(chapter.title)}</a></h2>'
                     f'{"<div class=muted>You will be able to:</div>" if chapter_goals else ""}{goal_list}</li>')
    body = (f"<h1>{html.escape(book.title)}</h1><p>{html.escape(book.description)}</p>"
            f'<p class="muted">{html.escape(", ".join(book.authors))}</p>'
            f'<p class="edition">{html.escape(EDITION_NOTE[edition])}</p>'
            f'<ol class="chapters">{"".join(items)}</ol>')
    return _site_page(book, book.title, body)


def render_glossary(book: Book, terms: list[Term]) -> str:
    # One row per (English, Chinese) pair, listing every chapter that uses it, sorted by the English term.
    rows: dict[tuple[str, str], list[Term]] = {}
    for term in terms:
        same = rows.setdefault((term.english, term.chinese), [])
        if all(t.chapter != term.chapter for t in same):
            same.append(term)
    body_rows = []
    for (english, chinese), same in sorted(rows.items(), key=lambda kv: (_plain(kv[0][0]).lower(), kv[0][1])):
        links = ", ".join(f'<a href="{page_name(t.chapter)}#{html.escape(t.anchor)}">{t.chapter.number:02d} '
                          f'{html.escape(t.chapter.title)}</a>' for t in same)
        body_rows.append(f'<tr><td lang="en">{_inline_markdown(english)}</td><td lang="zh">'
                         f'{_inline_markdown(chinese)}</td><td>{links}</td></tr>')
    empty = [c for c in book.chapters if not any(t.chapter == c for t in terms)]
    note = (f'<p class="muted">No terms table yet in: {", ".join(f"{c.number:02d} {html.escape(c.title)}" for c in empty)}.</p>'
            if empty else "")
    body = (f"<h1>Glossary · 术语表</h1><p>Every chapter's terms in English and Chinese, in alphabetical order. "
            f"The last column links to the chapter that introduces the term.</p>{note}"
            f'<table class="glossary"><thead><tr><th>English</th><th>中文</th><th>Chapter</th></tr></thead>'
            f'<tbody>{"".join(body_rows)}</tbody></table>')
    return _site_page(book, f"Glossary · {book.title}", body)


_NOTEBOOK_LINK = re.compile(r'href="(?:[^"#:]*/)?([^"/#:]+)\.ipynb(#[^"]*)?"')


def link_chapters(page: str, book: Book) -> str:
    """Point markdown links to a chapter's notebook (`03_feed_forward.ipynb#...`) at its page in the book."""
    stems = {chapter.stem for chapter in book.chapters}

    def to_page(match: re.Match) -> str:
        stem, fragment = match.group(1), match.group(2) or ""
        return f'href="{stem}.html{fragment}"' if stem in stems else match.group(0)

    return _NOTEBOOK_LINK.sub(to_page, page)


_IMG_WITHOUT_ALT = re.compile(r"<img(?![^>]*\balt=)")
_FOCUSABLE = re.compile(r'(<div class="[^"]*\b(?:jp-Cell-inputWrapper|jp-OutputArea-output)\b[^"]*")(?![^>]*tabindex)')


def _exporter():
    from nbconvert import HTMLExporter
    from nbconvert.exporters.html import WidgetsDataTypeFilter
    from nbconvert.exporters.templateexporter import TemplateExporter
    from nbconvert.filters.highlight import Highlight2HTML

    class BookExporter(HTMLExporter):
        """HTMLExporter without its final BeautifulSoup pass, which took half of the build time.

        That pass only adds alt texts to images and tabindex="0" to cell inputs and outputs; two regular
        expressions do the same on the template's output.
        """

        def from_notebook_node(self, nb, resources=None, **kw):
            langinfo = nb.metadata.get("language_info", {})
            lexer = langinfo.get("pygments_lexer", langinfo.get("name", None))
            self.register_filter("highlight_code", self.filters.get(
                "highlight_code", Highlight2HTML(pygments_lexer=lexer, parent=self)))
            resources = self._init_resources(resources)
            self.register_filter("filter_data_type", WidgetsDataTypeFilter(
                notebook_metadata=self._nb_metadata, parent=self, resources=resources))
            page, resources = TemplateExporter.from_notebook_node(self, nb, resources, **kw)
            page = _IMG_WITHOUT_ALT.sub('<img alt="A figure drawn by the code above"', page)
            return _FOCUSABLE.sub(r'\1 tabindex="0"', page), resources

    return BookExporter(template_name="minibert", extra_template_basedirs=[str(TEMPLATES)],
                        mathjax_url=MATHJAX_URL, require_js_url=REQUIRE_JS_URL,
                        widget_renderer_url=WIDGET_RENDERER_URL, embed_images=True)


def check_edition(edition: str) -> str:
    if edition not in EDITIONS:
        raise ValueError(f"unknown book edition {edition!r}; expected one of: {', '.join(EDITIONS)}")
    return edition


def _without_markers(source: str, where: str) -> str:
    """A solution cell as the teacher wrote it, minus its `### BEGIN/END SOLUTION` lines."""
    from .student import regions

    markers = {i for r in regions(source, where) for i in (r.begin, r.end)}
    return "\n".join(line for i, line in enumerate(source.split("\n")) if i not in markers)


def edition_notebook(book: Book, chapter: Chapter, edition: str):
    """The notebook a chapter page is rendered from, in one of the two editions.

    Both start from the student version (minibert.book.student): each solution region is the
    `raise NotImplementedError(...)` stub, and exercise and check cells have no outputs. The class edition is
    exactly that (a cell with a student replacement shows the replacement: student.student_cells), and outside
    its folds the self-study edition reads the same. The self-study edition adds, after each exercise's check cell, a fold holding the solution
    cells as the teacher wrote them (markers removed) with their stored outputs, then what the check printed.
    """
    import copy

    import nbformat

    from .student import _source, find_exercises, student_notebook

    check_edition(edition)
    student = student_notebook(book, chapter)
    nb = nbformat.reads(student.text, as_version=4)
    if edition == CLASS:
        return nb
    teacher = nbformat.read(book.path(chapter.notebook), as_version=4)
    # find_exercises reads plain dicts; the student notebook keeps the teacher's cell order and count.
    exercises = find_exercises(nbformat.from_dict(teacher), chapter.notebook)
    inserts: list[tuple[int, list]] = []
    for e in exercises:
        if not e.solution_cells:
            continue
        fold = []
        for i in e.solution_cells:
            cell = copy.deepcopy(teacher.cells[i])
            cell.source = _without_markers(_source(cell), f"{chapter.notebook}, cell {i + 1}")
            fold.append(cell)
        if e.check_cell is not None and teacher.cells[e.check_cell].get("outputs"):
            check = copy.deepcopy(teacher.cells[e.check_cell])
            check.metadata.setdefault("transient", {})["remove_source"] = True  # its outputs only
            fold.append(check)
        for k, cell in enumerate(fold):
            if "id" in cell:
                cell.id = f"{cell.id}-solution"[:64]
            cell.metadata[FOLD] = {"exercise": e.number, "start": k == 0, "end": k == len(fold) - 1}
        after = e.check_cell if e.check_cell is not None else e.solution_cells[-1]
        inserts.append((after + 1, fold))
    for at, fold in reversed(inserts):
        nb.cells[at:at] = fold
    return nb


def build_book(book: Book, out: Path | None = None, progress: bool = True, edition: str = SELF_STUDY) -> Path:
    """Write the site into `out` (default `_build/book/`, `_build/book-class/` for the class edition) and
    return the index page's path.

    The site is built in a temporary folder beside `out` and replaces the previous one only when every page
    was written (minibert.book.outdir): a failed build leaves the previous site as it was.
    """
    import nbformat
    from tqdm import tqdm

    from .outdir import output_folder

    check_edition(edition)
    out = Path(out) if out else book.path(DEFAULT_OUT[edition])
    with output_folder(book, out, "book") as stage:
        exporter = _exporter()
        goals: dict[int, list[str]] = {}
        terms: list[Term] = []
        bar = tqdm(total=len(book.chapters) + 1, desc="minibert book", unit="page", disable=not progress)
        try:
            bar.set_postfix_str("offline scripts")
            copy_assets(book, stage)
            for i, chapter in enumerate(book.chapters):
                bar.set_postfix_str(Path(chapter.notebook).name)
                path = book.path(chapter.notebook)
                try:
                    nb = edition_notebook(book, chapter, edition)
                except (OSError, ValueError) as exc:  # NotJSONError and ValidationError are ValueErrors
                    raise BookError(f"{chapter.notebook}: cannot read the notebook ({exc}); "
                                    f"no page was written") from None
                goals[chapter.number] = learning_goals(nb)
                anchor = terms_anchor(nb)
                terms += [Term(en, zh, chapter, anchor) for en, zh in terms_table(nb)]
                nb.metadata["title"] = f"{chapter.number:02d} · {chapter.title}"
                resources = {"metadata": {"path": str(path.parent), "name": chapter.stem},
                             "minibert_nav": _nav(book, i)}
                body, _ = exporter.from_notebook_node(nb, resources=resources)
                _write_atomic(stage / page_name(chapter), link_chapters(body, book))
                bar.update()
            bar.set_postfix_str("index and glossary")
            _write_atomic(stage / GLOSSARY, render_glossary(book, terms))
            _write_atomic(stage / INDEX, render_index(book, goals, edition))
            bar.update()
        finally:
            bar.close()
    return out.resolve() / INDEX
