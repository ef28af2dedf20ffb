"""pytest hooks and fixtures shared by the whole suite.

What a fresh machine may lack: tests that need Debian's chromium or the npm packages in node_modules/ ask for
the `chromium` or `node_modules` fixture. Outside CI they then skip with one line saying what to install;
under CI (env CI set, as .ci/run does) they fail instead, so a CI machine cannot pass by skipping them.

Notebook times: the course promises a full strict nbval run in under a minute; this prints each notebook's time (kernel
start included: nbval starts it in the first cell's set-up) in pytest's terminal summary. The hooks live
in a plugin registered at start-up, because hooks written in tests/conftest.py itself would only see the
items under tests/, not the notebooks (`make test` passes both).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parent.parent
# The npm packages (package.json) the book and the slides copy their offline scripts from.
NPM_PACKAGES = ("mathjax", "requirejs", "@jupyter-widgets/html-manager", "reveal.js")
INSTALL_NPM = ("install Node.js and npm (Debian: `apt-get install nodejs npm`; .ci/run does), then run `make setup`, "
               "which runs `npm ci`")
INSTALL_CHROMIUM = ("install Debian's chromium (`apt-get install chromium`; .ci/run does) or point MINIBERT_CHROMIUM "
                    "at one")


def unavailable(reason: str):
    """Skip the test with `reason`; under CI fail it instead."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


def chromium_path() -> str | None:
    """MINIBERT_CHROMIUM when set (even to a missing file: how the skip is tested), else Debian's chromium on PATH."""
    if "MINIBERT_CHROMIUM" in os.environ:
        candidates = [os.environ["MINIBERT_CHROMIUM"]]
    else:
        candidates = [shutil.which("chromium"), shutil.which("chromium-browser")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def missing_npm_packages(node_modules: Path | None = None) -> list[str]:
    folder = node_modules or ROOT / "node_modules"
    return [name for name in NPM_PACKAGES if not (folder / name / "package.json").is_file()]


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """ROOT/node_modules with the book's and slides' npm packages (skip, or fail under CI, without them)."""
    missing = missing_npm_packages()
    if missing:
        unavailable(f"needs the npm packages {', '.join(missing)} in node_modules/: {INSTALL_NPM}")
    return ROOT / "node_modules"


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of Debian's chromium (skip, or fail under CI, without it)."""
    path = chromium_path()
    if path is None:
        unavailable(f"needs a Chromium browser: {INSTALL_CHROMIUM}")
    return path


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@pytest.fixture(scope="module")
def browser(chromium):
    """A headless Chromium driven by Playwright (skip, or fail under CI, without chromium or playwright)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is missing: `make setup` installs it with the test extra")
    playwright = sync_playwright().start()
    try:
        launched = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()
    finally:
        playwright.stop()


@contextlib.contextmanager
def running_app(log_path: Path):
    """`minibert app --port 0` as (process, url), its Voilà log in log_path (printed when the body fails). On the
    way out it is stopped with SIGTERM (the command then stops Voilà's own process group), killed if it hangs."""
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "minibert", "app", "--port", "0"], cwd=ROOT,
                                   stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
        try:
            line = process.stdout.readline()  # blocks until Voilà listens (or the command dies)
            match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
            assert match, f"`minibert app` printed no address: {line!r}; its log:\n{log_path.read_text()}"
            yield process, match.group(1)
        except BaseException:
            print(log_path.read_text())
            raise
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


# Under CI the property-based tests draw the same examples on every run (derandomize), so a red run can be
# reproduced and a green one does not depend on luck; locally they keep exploring new examples.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


class NotebookTimes:
    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)

    def pytest_runtest_logreport(self, report):
        path = report.nodeid.split("::", 1)[0]
        if path.endswith(".ipynb"):
            self.seconds[path] += report.duration  # set-up, call and teardown phases

    def pytest_terminal_summary(self, terminalreporter):
        if not self.seconds:
            return
        terminalreporter.section("notebook times (nbval)")
        for path, seconds in sorted(self.seconds.items()):
            terminalreporter.write_line(f"{seconds:7.1f}s  {path}")
        terminalreporter.write_line(f"{sum(self.seconds.values()):7.1f}s  total, {len(self.seconds)} notebooks")


def pytest_configure(config):
    if not config.pluginmanager.has_plugin("minibert-notebook-times"):
        config.pluginmanager.register(NotebookTimes(), "minibert-notebook-times")
