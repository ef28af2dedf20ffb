"""Measure each chapter's peak memory and run time, for sizing a JupyterHub (docs/hosting.md).

Runs every notebook of book.toml (or the ones named) top to bottom, one at a time, each in a fresh kernel, the
way a student's kernel would run it, without writing anything. A last cell asks the kernel for its own peak
resident memory (getrusage's ru_maxrss, which Linux reports in KiB).
Then it starts an empty single-user Jupyter server (JupyterLab) and reads its peak memory after start-up.
Prints a Markdown table and the machine and versions.

    .venv/bin/python scripts/measure_notebooks.py [00 07 ...]   # run it with `nice -n 5` on a shared machine
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from importlib.metadata import version
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from minibert.book.project import load_book  # noqa: E402

PEAK = "import resource\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"


def measure(path: Path) -> tuple[float, int]:
    """(seconds, peak KiB of the kernel) for one notebook."""
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(PEAK))
    client = NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - start
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("output_type") == "stream")
    return seconds, int(text.strip().splitlines()[-1])


def jupyter_server_peak() -> int:
    """Peak KiB (VmHWM) of a single-user JupyterLab server, idle after start-up."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
                                "--ServerApp.ip=127.0.0.1", "--IdentityProvider.token=measure",
                                "--ServerApp.root_dir=" + str(ROOT / "notebooks"), "--allow-root"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token=measure", timeout=5).close()
                break
            except OSError:
                time.sleep(0.5)
        time.sleep(3)
        status = Path(f"/proc/{process.pid}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
    finally:
        process.terminate()
        process.wait(30)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    versions = ", ".join(f"{p} {version(p)}" for p in ("torch", "transformers", "ipykernel", "jupyter_server",
                                                       "jupyterlab", "voila", "nbclient"))
    return (f"{cpu}, {os.cpu_count()} cores, {int(mem) / 2**20:.0f} GiB RAM; {platform.platform()}; "
            f"Python {platform.python_version()}; {versions}; torch threads as each notebook sets them")


def main(argv: list[str]) -> int:
    book = load_book(ROOT)
    chapters = [c for c in book.chapters if not argv or any(c.stem.startswith(a) for a in argv)]
    print(machine(), flush=True)
    print("\n| chapter | run time | kernel peak memory |\n|---|---|---|", flush=True)
    for chapter in chapters:
        seconds, kernel = measure(book.path(chapter.notebook))
        print(f"| {chapter.stem} | {seconds:.1f} s | {kernel / 1024:.0f} MiB |", flush=True)
    print(f"\nJupyterLab server, idle after start-up: {jupyter_server_peak() / 1024:.0f} MiB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
