"""Serve chapter 07's parameter calculator on its own, as a web page, with Voilà (`minibert app`).

Voilà runs app/calculator.ipynb in a kernel and shows only its outputs: no code cells, ready for a
projector. The server listens on localhost unless `--ip` names an address of a classroom network.

Every page view starts a kernel. A page that is closed frees its kernel: the page tells the server on
`beforeunload` (our template gives it the XSRF cookie Voilà 0.5's standalone server never sets, which made
that request fail with 403), and a kernel that no page is connected to is culled after `cull_idle` seconds
without activity (a tab lost with a sleeping laptop or a crashed browser). A kernel with an open page is never
culled, however long the class looks at it.

Voilà runs in its own session and process group, under minibert/book/voila_guard.py, which stops it when
`minibert app` is gone, whether it stopped on Ctrl+C, SIGTERM, SIGHUP (a closed terminal) or SIGKILL.
"""

from __future__ import annotations

import errno
import getpass
import ipaddress
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
# A kernel no page is connected to is shut down after this many seconds without activity.
DEFAULT_CULL_IDLE = 600
MIN_CULL_IDLE = 10
GUARD = Path(__file__).with_name("voila_guard.py")


def check_host(text: str) -> str:
    """The address to listen on, as Voilà wants it; ValueError naming `text` unless it is an IP address."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise ValueError(f"expected an IP address of this computer, such as 127.0.0.1 (this computer only), "
                         f"192.168.1.20 (one network) or 0.0.0.0 (every network), got {text!r}") from None


def is_local_only(host: str) -> bool:
    """Whether only this computer can reach `host` (a loopback address)."""
    return ipaddress.ip_address(host).is_loopback


def check_cull_idle(seconds: int) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < MIN_CULL_IDLE:
        raise ValueError(f"expected a whole number of seconds, at least {MIN_CULL_IDLE}, after which a kernel "
                         f"no page is connected to is shut down, got {seconds!r}")
    return seconds


def _family(host: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET


def _not_here(host: str) -> BookError:
    return BookError(f"{host} is not an address of this computer; pass one of its own addresses with --ip "
                     f"(`ip -brief address` or `ifconfig` lists them), or 0.0.0.0 for every network")


def free_port(host: str = HOST) -> int:
    """A TCP port nothing listens on right now (the OS picks it); BookError when `host` is not this computer's."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as s:
        try:
            s.bind((host, 0))
        except OSError as e:
            if e.errno == errno.EADDRNOTAVAIL:
                raise _not_here(host) from None
            raise
        return s.getsockname()[1]


def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether `port` can be listened on at `host`; BookError when `host` is not an address of this computer."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as s:
        if os.name == "posix":  # as Voilà's server does: connections of a stopped server (TIME_WAIT) do not count
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRNOTAVAIL:
                raise _not_here(host) from None
            return False
        return True


def app_url(port: int, host: str = HOST) -> str:
    shown = f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    return f"http://{shown}:{port}/"


def network_addresses() -> list[str]:
    """This computer's IPv4 addresses other than loopback, as far as the host name tells (best effort)."""
    found = set()
    try:
        for *_, sockaddr in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            found.add(sockaddr[0])
    except OSError:
        pass
    return sorted(a for a in found if not ipaddress.ip_address(a).is_loopback)


def voila_arguments(notebook: Path, port: int, host: str = HOST, cull_idle: int = DEFAULT_CULL_IDLE) -> list[str]:
    """Voilà's command-line arguments (after `voila`)."""
    check_cull_idle(cull_idle)
    return [str(notebook), "--no-browser", f"--port={port}", "--Voila.port_retries=0",
            f"--Voila.ip={host}", "--strip_sources=True", "--theme=light", f"--template={TEMPLATE}",
            "--Voila.log_level=WARN",
            # A teacher sees what went wrong on the page itself, not only in the terminal.
            "--VoilaConfiguration.show_tracebacks=True",
            # jupyter_server's kernel culler: a kernel with no page connected, idle for cull_idle seconds, is shut
            # down; connected or busy kernels never are. Checked every quarter of that (at most every minute).
            f"--MappingKernelManager.cull_idle_timeout={cull_idle}",
            f"--MappingKernelManager.cull_interval={max(1, min(60, cull_idle // 4))}",
            "--MappingKernelManager.cull_connected=False", "--MappingKernelManager.cull_busy=False"]


def voila_command(notebook: Path, port: int, host: str = HOST, cull_idle: int = DEFAULT_CULL_IDLE,
                  watch_fd: int | None = None) -> list[str]:
    """The command that runs Voilà: under voila_guard.py, watching `watch_fd`, when one is given."""
    run = [sys.executable, str(GUARD), str(watch_fd)] if watch_fd is not None else [sys.executable, "-m", "voila"]
    return [*run, *voila_arguments(notebook, port, host, cull_idle)]


def start_app(book: Book, port: int | None = None, notebook: str | Path | None = None,
              log=None, host: str = HOST, cull_idle: int = DEFAULT_CULL_IDLE) -> tuple[subprocess.Popen, str]:
    """Start Voilà in its own process group; returns (process, address). Stop it with `stop_app`.

    Voilà stops by itself when this process exits, however it exits (see voila_guard.py).
    log: an open file for Voilà's messages (default: this terminal).
    """
    try:
        host = check_host(host)
        check_cull_idle(cull_idle)
    except ValueError as e:
        raise BookError(str(e)) from None
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535):
        raise BookError(f"expected a port number from 0 to 65535 (0: any free one), got {port!r}")
    try:
        import voila  # noqa: F401
    except ImportError:
        raise BookError("Voilà is not installed in this environment; run `make setup` (it installs the "
                        "`course` extra, which includes voila)") from None
    path = Path(notebook) if notebook else book.path(APP_NOTEBOOK)
    if not path.is_file():
        raise BookError(f"the app notebook {path} {'is not a regular file' if path.exists() else 'does not exist'}")
    if port and not port_is_free(port, host):
        raise BookError(f"port {port} on {host} is in use; pass another with --port (or --port 0 for any free one)")
    port = port or free_port(host)
    data = str(book.path(APP_DATA))
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "JUPYTER_PATH": os.pathsep.join(filter(None, [data, os.environ.get("JUPYTER_PATH")]))}
    # The watchdog pipe: Voilà reads `watch`, this process alone holds `keep` (os.pipe's ends are not inherited).
    watch, keep = os.pipe()
    try:
        process = subprocess.Popen(voila_command(path, port, host, cull_idle, watch_fd=watch), cwd=book.root,
                                   stdout=log, stderr=log, env=env, start_new_session=True, pass_fds=(watch,))
    except BaseException:
        os.close(keep)
        raise
    finally:
        os.close(watch)
    process.minibert_watch_fd = keep
    # 0.0.0.0 or :: listens on every address, this computer's own loopback one included: show that one here.
    if ipaddress.ip_address(host).is_unspecified:
        host = "::1" if ipaddress.ip_address(host).version == 6 else HOST
    return process, app_url(port, host)


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
    """Stop Voilà and the kernels it started (SIGTERM to its process group); safe to call twice."""
    fd = getattr(process, "minibert_watch_fd", None)
    if fd is not None:
        process.minibert_watch_fd = None
        os.close(fd)  # Voilà's guard sees the pipe close and stops Voilà too
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


def network_warning(host: str, port: int) -> str:
    """What `minibert app --ip` prints before serving on a network."""
    if ipaddress.ip_address(host).is_unspecified:
        where = "every network this computer is on"
        addresses = network_addresses()
        urls = ", ".join(app_url(port, a) for a in addresses) or f"http://<this computer's address>:{port}/"
    else:
        where = f"the network of {host}"
        urls = app_url(port, host)
    try:
        user = getpass.getuser()
    except Exception:  # no user name in the environment or the password database
        user = "the user who started it"
    return (f"WARNING: minibert app serves the calculator to {where}, with no password.\n"
            f"  Anyone who can reach this computer there can open the page. Each page they open runs the\n"
            f"  page's code ({APP_NOTEBOOK}) in a new Python kernel on this computer, as user {user}.\n"
            f"  (Voilà lets a page send widget messages only, not new code.) Use it only on a network you\n"
            f"  trust, such as a classroom's, and stop it with Ctrl+C after the lesson.\n"
            f"  Students open: {urls}")


def serve(book: Book, port: int | None = DEFAULT_PORT, notebook: str | Path | None = None,
          open_browser: bool = False, host: str = HOST, cull_idle: int = DEFAULT_CULL_IDLE) -> int:
    """`minibert app`: start the calculator, print its address, serve until Ctrl+C, SIGTERM or SIGHUP."""

    def _terminate(signum, frame):  # `kill` or a closed terminal: stop Voilà and its kernels too
        raise KeyboardInterrupt

    handled = (signal.SIGTERM, signal.SIGHUP) if hasattr(signal, "SIGHUP") else (signal.SIGTERM,)
    previous = {s: signal.signal(s, _terminate) for s in handled}
    process = None
    try:
        process, url = start_app(book, port=port or None, notebook=notebook, host=host, cull_idle=cull_idle)
        wait_until_serving(process, url)
        if not is_local_only(check_host(host)):
            print(network_warning(check_host(host), urllib.parse.urlsplit(url).port), file=sys.stderr, flush=True)
        print(f"minibert app: the parameter calculator is at {url}  (Ctrl+C stops it)", flush=True)
        if open_browser:
            import webbrowser

            webbrowser.open(url)
        return process.wait()
    except KeyboardInterrupt:
        try:
            print("\nminibert app: stopped", flush=True)
        except OSError:  # the terminal is gone (SIGHUP)
            pass
        return 0
    finally:
        if process is not None:
            stop_app(process)
        for s, handler in previous.items():
            signal.signal(s, handler)
