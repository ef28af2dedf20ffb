"""Serve chapter 07's parameter calculator on its own, as a web page, with Voilà (`minibert app`).

Voilà runs app/calculator.ipynb in a kernel and shows only its outputs: no code cells, ready for a
projector. The server listens on localhost only.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

from .project import Book, BookError

APP_NOTEBOOK = "app/calculator.ipynb"
# Holds voila/templates/minibert: Voilà's lab page without its CDN stylesheets (found through JUPYTER_PATH).
APP_DATA = "app/share/jupyter"
TEMPLATE = "minibert"
HOST = "127.0.0.1"
DEFAULT_PORT = 8866


def free_port(host: str = HOST) -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_is_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def app_url(port: int, host: str = HOST) -> str:
    return f"http://{host}:{port}/"


def voila_command(notebook: Path, port: int, host: str = HOST) -> list[str]:
    return [sys.executable, "-m", "voila", str(notebook), "--no-browser", f"--port={port}",
            f"--Voila.ip={host}", "--strip_sources=True", "--theme=light", f"--template={TEMPLATE}",
            "--Voila.log_level=WARN",
            # A teacher sees what went wrong on the page itself, not only in the terminal.
            "--VoilaConfiguration.show_tracebacks=True"]


def start_app(book: Book, port: int | None = None, notebook: str | Path | None = None,
              log=None) -> tuple[subprocess.Popen, str]:
    """Start Voilà in its own process group; returns (process, address). Stop it with `stop_app`.

    log: an open file for Voilà's messages (default: this terminal).
    """
    try:
        import voila  # noqa: F401
    except ImportError:
        raise BookError("Voilà is not installed in this environment; run `make setup` (it installs the "
                        "`course` extra, which includes voila)") from None
    path = Path(notebook) if notebook else book.path(APP_NOTEBOOK)
    if not path.is_file():
        raise BookError(f"the app notebook {path} {'is not a regular file' if path.exists() else 'does not exist'}")
    port = port or free_port()
    if not port_is_free(port):
        raise BookError(f"port {port} on {HOST} is in use; pass another with --port (or --port 0 for any free one)")
    data = str(book.path(APP_DATA))
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "JUPYTER_PATH": os.pathsep.join(filter(None, [data, os.environ.get("JUPYTER_PATH")]))}
    process = subprocess.Popen(voila_command(path, port), cwd=book.root, stdout=log, stderr=log, env=env,
                               start_new_session=True)
    return process, app_url(port)


def wait_until_serving(process: subprocess.Popen, url: str, timeout: float = 60.0) -> None:
    """Block until Voilà listens at `url`; BookError if it exits first or not within `timeout` seconds.

    Only connects: a GET of the page itself would start a kernel for nobody.
    """
    parts = urllib.parse.urlsplit(url)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise BookError(f"Voilà exited with status {process.returncode} before serving {url}")
        try:
            with socket.create_connection((parts.hostname, parts.port), timeout=2):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise BookError(f"Voilà did not answer at {url} within {timeout:.0f} s")
        time.sleep(0.2)


def stop_app(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop Voilà and the kernel it started (the whole process group); safe to call twice."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout)


def serve(book: Book, port: int | None = DEFAULT_PORT, notebook: str | Path | None = None,
          open_browser: bool = False) -> int:
    """`minibert app`: start the calculator, print its address, serve until Ctrl+C."""
    process, url = start_app(book, port=port or None, notebook=notebook)

    def _terminate(signum, frame):  # `kill` or a closed terminal: stop Voilà and its kernel too
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        wait_until_serving(process, url)
        print(f"minibert app: the parameter calculator is at {url}  (Ctrl+C stops it)", flush=True)
        if open_browser:
            import webbrowser

            webbrowser.open(url)
        return process.wait()
    except KeyboardInterrupt:
        print("\nminibert app: stopped", flush=True)
        return 0
    finally:
        stop_app(process)
        signal.signal(signal.SIGTERM, previous)
