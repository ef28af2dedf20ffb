"""The parameter calculator on a projector, measured in the real browser (Debian's chromium through Playwright).

The calculator's widget state is rendered by the same offline widget manager the book uses (node_modules'
@jupyter-widgets/html-manager). At 1280 x 720, every number it shows is at least 24 CSS px. Browser zoom is
emulated the way the browser does it: zoom z turns a 1280 x 720 screen into a 1280/z x 720/z CSS-pixel viewport
at device scale z. At 100 %, 150 % and 200 % nothing of the calculator lies outside the viewport's width, the page
does not scroll sideways, and no element cuts off its own content (scrollWidth > clientWidth). Screenshots go to
_build/screenshots/.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
from pathlib import Path

import pytest

from minibert.widgets import compare_calculator, parameter_calculator

from conftest import running_app  # tests/ is on sys.path

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "_build" / "screenshots"
SCREEN = (1280, 720)
ZOOMS = (1.0, 1.5, 2.0)
MIN_FONT_PX = 24

PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>calculator</title>
<script src="require.js"></script>
<script src="html-manager/embed-amd.js"></script>
<script type="application/vnd.jupyter.widget-state+json">{state}</script>
</head><body style="margin: 8px">
<script type="application/vnd.jupyter.widget-view+json">{view}</script>
</body></html>
"""

# Every text node with a digit inside the calculator, plus the inputs and selects: their computed font sizes.
FONT_SIZES = """() => {
  const root = document.querySelector('.minibert-calc');
  const out = [];
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!/[0-9]/.test(node.textContent) || el.closest('style') || !el.getClientRects().length) continue;
    out.push([node.textContent.trim().slice(0, 40), parseFloat(getComputedStyle(el).fontSize)]);
  }
  for (const el of root.querySelectorAll('input:not([type=checkbox]), select')) {
    out.push([el.value || el.tagName, parseFloat(getComputedStyle(el).fontSize)]);
  }
  return out;
}"""

# Elements of the calculator that reach past the viewport's right edge or cut off their own content.
CLIPPED = """() => {
  const width = document.documentElement.clientWidth;
  const out = [];
  for (const el of document.querySelectorAll('.minibert-calc, .minibert-calc *')) {
    if (el.closest('style') || !el.getClientRects().length) continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    const label = (el.className && el.className.baseVal === undefined ? el.className : el.tagName) + ' "'
                  + (el.textContent || '').trim().slice(0, 30) + '"';
    if (r.right > width + 0.5 || r.left < -0.5) out.push(`outside the viewport (${r.left.toFixed(0)}..${r.right.toFixed(0)} of ${width}): ${label}`);
    const style = getComputedStyle(el);
    const clips = ['hidden', 'clip', 'auto', 'scroll'].includes(style.overflowX);
    if (clips && el.scrollWidth > el.clientWidth + 1 && !el.matches('.noUi-target, .noUi-target *, select'))
      out.push(`content cut off (${el.scrollWidth} > ${el.clientWidth}): ${label}`);
  }
  if (document.documentElement.scrollWidth > width + 1) out.push(`the page scrolls sideways (${document.documentElement.scrollWidth} > ${width})`);
  return out;
}"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory, node_modules):
    """A folder served on 127.0.0.1 with the widget manager and one page per calculator."""
    folder = tmp_path_factory.mktemp("calculator")
    shutil.copy(node_modules / "requirejs" / "require.js", folder / "require.js")
    shutil.copytree(node_modules / "@jupyter-widgets" / "html-manager" / "dist", folder / "html-manager")
    from ipywidgets.embed import embed_data

    for name, widget in (("single", parameter_calculator()), ("compare", compare_calculator())):
        data = embed_data(views=[widget])
        page = PAGE.format(state=json.dumps(data["manager_state"]), view=json.dumps(data["view_specs"][0]))
        (folder / f"{name}.html").write_text(page, encoding="utf-8")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def _open(browser, url: str, zoom: float):
    width, height = round(SCREEN[0] / zoom), round(SCREEN[1] / zoom)
    context = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=zoom)
    errors = []
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("http://127.0.0.1", "data:"))
                  else (errors.append(route.request.url), route.abort()))
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_selector(".minibert-total", timeout=30_000)
    page.wait_for_timeout(300)  # let the sliders lay out
    return context, page, errors


@pytest.mark.parametrize("name", ["single", "compare"])
def test_calculator_numbers_are_at_least_24px_at_1280x720(browser, site, name):
    context, page, errors = _open(browser, site + f"{name}.html", 1.0)
    try:
        sizes = page.evaluate(FONT_SIZES)
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"calculator-{name}-1280x720.png"))
    finally:
        context.close()
    assert not errors, errors
    assert any("109,482,240" in text for text, _ in sizes), "the total is on the page"
    assert len(sizes) > 40, sizes  # the breakdown's numbers and formulas, the memory, the readouts
    small = [(text, size) for text, size in sizes if size < MIN_FONT_PX]
    assert not small, f"numbers under {MIN_FONT_PX} px at 1280x720: {small[:10]}"


@pytest.mark.parametrize("zoom", ZOOMS, ids=lambda z: f"{z:.0%}")
@pytest.mark.parametrize("name", ["single", "compare"])
def test_calculator_is_not_clipped_at_browser_zoom(browser, site, name, zoom):
    context, page, errors = _open(browser, site + f"{name}.html", zoom)
    try:
        clipped = page.evaluate(CLIPPED)
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"calculator-{name}-zoom{round(zoom * 100)}.png"), full_page=True)
    finally:
        context.close()
    assert not errors, errors
    assert not clipped, f"{name} calculator at {zoom:.0%} zoom of 1280x720: " + "; ".join(clipped[:12])


# ------------------------------------------------------------------------------------------- live, in Voilà

def test_live_calculator_updates_while_typing_and_dragging(browser, tmp_path):
    """`minibert app` (Voilà, a live kernel): typing digits into Vocab without Enter or Tab changes the total, and
    so does dragging the Layers slider with the mouse (no release needed in between); numbers stay >= 24 px."""
    import re

    from playwright.sync_api import expect

    def total_for(**fields) -> str:
        from minibert.params import count_parameters
        from minibert.config import BertConfig

        return f"{count_parameters(BertConfig(**fields)).total:,}"

    with running_app(tmp_path / "voila.log") as (process, url):
        context = None
        try:
            context = browser.new_context(viewport={"width": SCREEN[0], "height": SCREEN[1]})
            page = context.new_page()
            page.goto(url, timeout=120_000)
            total = page.locator(".minibert-total")
            expect(total).to_have_text(total_for(), timeout=120_000)
            sizes = page.evaluate(FONT_SIZES)
            assert not [(t, s) for t, s in sizes if s < MIN_FONT_PX], sizes
            vocab = page.locator(".widget-inline-hbox", has=page.locator("label", has_text=re.compile(r"^\s*Vocab\s*$")))
            box = vocab.locator("input")
            box.fill("")
            box.type("1000")  # keystrokes only: no Enter, no Tab, the box keeps the focus
            expect(total).to_have_text(total_for(vocab_size=1000), timeout=30_000)
            assert page.evaluate("() => document.activeElement.type") == "number"
            handle = page.locator(".widget-hslider", has=page.locator("label", has_text=re.compile(r"^\s*Layers\s*$")))
            knob = handle.locator(".noUi-handle").bounding_box()
            track = handle.locator(".noUi-target").bounding_box()
            page.mouse.move(knob["x"] + knob["width"] / 2, knob["y"] + knob["height"] / 2)
            page.mouse.down()
            page.mouse.move(track["x"] + 1, knob["y"] + knob["height"] / 2, steps=8)  # to the left end: 1 layer
            expect(total).to_have_text(total_for(vocab_size=1000, num_hidden_layers=1), timeout=30_000)
            page.mouse.up()
        finally:
            if context is not None:
                context.close()
