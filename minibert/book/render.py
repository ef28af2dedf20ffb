"""Render the course to static HTML from the notebooks' stored (nbval-verified) outputs."""

from __future__ import annotations

import html
import shutil
import sys
from pathlib import Path

from .mirror import _write_atomic
from .project import Book, Chapter

PAGE = """<!DOCTYPE html>
<html lang="{lang}"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}
li{{margin:.3rem 0}} .n{{color:#666;font-variant-numeric:tabular-nums}}</style></head>
<body><h1>{title}</h1><p>{description}</p><p class="n">{authors}</p>
<h2>Chapters</h2><ol start="0">{items}</ol></body></html>
"""
NAV = ('<nav style="display:flex;justify-content:space-between;max-width:64rem;margin:1rem auto;'
       'font-family:system-ui,sans-serif">{prev}<a href="index.html">Contents</a>{next}</nav>')


def page_name(chapter: Chapter) -> str:
    return f"{chapter.stem}.html"


def _nav(book: Book, i: int) -> str:
    chapters = book.chapters
    prev = f'<a href="{page_name(chapters[i - 1])}">&larr; {html.escape(chapters[i - 1].title)}</a>' if i > 0 else "<span></span>"
    nxt = (f'<a href="{page_name(chapters[i + 1])}">{html.escape(chapters[i + 1].title)} &rarr;</a>'
           if i + 1 < len(chapters) else "<span></span>")
    return NAV.format(prev=prev, next=nxt)


def build_book(book: Book, out: Path | None = None) -> Path:
    import nbformat
    from nbconvert import HTMLExporter

    out = out or book.path("_build/book")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    exporter = HTMLExporter(template_name="lab")
    for i, chapter in enumerate(book.chapters):
        print(f"[{i + 1}/{len(book.chapters)}] {chapter.notebook}", file=sys.stderr, flush=True)
        nb = nbformat.read(book.path(chapter.notebook), as_version=4)
        nb.metadata["title"] = f"{chapter.number:02d} {chapter.title}"
        body, _ = exporter.from_notebook_node(nb)
        nav = _nav(book, i)
        body = body.replace("</main>", "</main>" + nav, 1) if "</main>" in body else body
        start = body.find(">", body.find("<body")) + 1
        body = body[:start] + nav + body[start:]
        _write_atomic(out / page_name(chapter), body)
    items = "".join(f'<li><a href="{page_name(c)}">{html.escape(c.title)}</a></li>' for c in book.chapters)
    index = out / "index.html"
    _write_atomic(index, PAGE.format(lang=html.escape(book.language), title=html.escape(book.title),
                                     description=html.escape(book.description),
                                     authors=html.escape(", ".join(book.authors)), items=items))
    return index
