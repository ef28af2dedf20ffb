"""pytest hooks shared by the whole suite: report how long each notebook takes under nbval.

The course promises a full strict nbval run in under a minute; this prints each notebook's time (kernel
start included: nbval starts it in the first cell's set-up) in pytest's terminal summary. The hooks live
in a plugin registered at start-up, because hooks written in tests/conftest.py itself would only see the
items under tests/, not the notebooks (`make test` passes both).
"""

from __future__ import annotations

import os
from collections import defaultdict

from hypothesis import settings

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
