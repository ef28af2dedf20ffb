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

import os
import shutil
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
