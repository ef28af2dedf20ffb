"""`minibert app` for a classroom: --ip with its warning, bad values refused, kernels freed and culled, and no
Voilà left behind when `minibert app` dies, even by SIGKILL.

The process tests read /proc (Linux) to find Voilà and its kernels among `minibert app`'s descendants; the
browser test drives Debian's chromium with Playwright, offline (every request off localhost is aborted).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from minibert.book import app

ROOT = Path(__file__).resolve().parent.parent
PROC = Path("/proc")
needs_proc = pytest.mark.skipif(not (PROC / "self" / "stat").is_file(), reason="reads processes from /proc (Linux)")


def _minibert(*args: str, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "minibert", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env, **kwargs)


# ------------------------------------------------------------------------------------------------ bad values


@pytest.mark.parametrize("args, named", [
    (["--ip", "999.1.1.1"], "'999.1.1.1'"),
    (["--ip", "classroom"], "'classroom'"),
    (["--ip", ""], "''"),
    (["--ip", "192.168.1.20/24"], "'192.168.1.20/24'"),
    (["--port", "70000"], "70000"),
    (["--port", "-1"], "-1"),
    (["--port", "eighty"], "'eighty'"),
    (["--cull-idle", "5"], "'5'"),
    (["--cull-idle", "0"], "'0'"),
    (["--cull-idle", "1.5"], "'1.5'"),
])
def test_bad_values_are_refused_naming_them(args, named):
    result = _minibert("app", *args)
    assert result.returncode == 2, result
    assert result.stdout == ""
    line = result.stderr.strip()
    assert line.startswith("minibert app: error: argument " + args[0]) and named in line and "\n" not in line, line


def test_an_address_of_another_computer_is_refused_before_voila_starts():
    # 192.0.2.0/24 is reserved for documentation (RFC 5737); 10.255.255.1 is simply not this computer's.
    ours = set(app.network_addresses())
    address = next(a for a in ("10.255.255.1", "198.51.100.7", "203.0.113.9") if a not in ours)
    for port in ("0", "8866"):
        result = _minibert("app", "--ip", address, "--port", port)
        assert result.returncode == 2, result
        assert result.stderr.strip() == (f"minibert app: error: {address} is not an address of this computer; pass "
                                         f"one of its own addresses with --ip (`ip -brief address` or `ifconfig` "
                                         f"lists them), or 0.0.0.0 for every network"), result.stderr


def test_a_port_in_use_is_refused_naming_it():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _minibert("app", "--port", str(port))
    assert result.returncode == 2, result
    assert result.stderr.strip() == (f"minibert app: error: port {port} on 127.0.0.1 is in use; pass another with "
                                     f"--port (or --port 0 for any free one)"), result.stderr


def test_check_host_accepts_addresses_only():
    assert app.check_host("127.0.0.1") == "127.0.0.1"
    assert app.check_host(" 0.0.0.0 ") == "0.0.0.0"
    assert app.check_host("::1") == "::1"
    assert app.check_host("fd00:0::2") == "fd00::2"
    for bad in ("localhost", "1.2.3", "256.0.0.1", "http://127.0.0.1/", "127.0.0.1:8866"):
        with pytest.raises(ValueError, match=re.escape(repr(bad))):
            app.check_host(bad)
    assert app.is_local_only("127.0.0.1") and app.is_local_only("::1")
    assert not app.is_local_only("0.0.0.0") and not app.is_local_only("192.168.1.20")


def test_start_app_refuses_bad_values_without_starting_anything(tmp_path):
    from minibert.book.project import BookError, load_book

    book = load_book(ROOT)
    for kwargs, named in [({"host": "nowhere"}, "'nowhere'"), ({"cull_idle": 3}, "3"), ({"cull_idle": "600"}, "'600'"),
                          ({"port": 65536}, "65536"), ({"port": -5}, "-5"), ({"port": True}, "True")]:
        with pytest.raises(BookError, match=re.escape(named)):
            app.start_app(book, **{"port": 0, **kwargs})


def test_voila_culls_idle_kernels_without_pages_and_never_busy_or_watched_ones():
    args = app.voila_arguments(Path("calc.ipynb"), 8866, "127.0.0.1", cull_idle=600)
    assert "--MappingKernelManager.cull_idle_timeout=600" in args
    assert "--MappingKernelManager.cull_interval=60" in args
    assert "--MappingKernelManager.cull_connected=False" in args and "--MappingKernelManager.cull_busy=False" in args
    assert "--MappingKernelManager.cull_interval=5" in app.voila_arguments(Path("c"), 1, cull_idle=20)
    assert "--Voila.port_retries=0" in args  # the printed address is the one Voilà listens on
    with pytest.raises(ValueError, match="at least 10"):
        app.voila_arguments(Path("c"), 1, cull_idle=9)


def test_the_network_warning_says_who_can_reach_it_and_what_runs():
    text = app.network_warning("192.168.1.20", 8866)
    assert text.startswith("WARNING: minibert app serves the calculator to the network of 192.168.1.20, "
                           "with no password.")
    assert "runs the\n  page's code (app/calculator.ipynb) in a new Python kernel on this computer" in text
    assert text.endswith("Students open: http://192.168.1.20:8866/")
    assert "every network this computer is on" in app.network_warning("0.0.0.0", 8866)
    assert app.app_url(8866, "::1") == "http://[::1]:8866/"


# ---------------------------------------------------------------------------------------- processes (/proc)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, or None when it no longer exists."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    state, ppid = text.rsplit(")", 1)[1].split()[:2]
    return state, int(ppid)


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in "ZX"  # a zombie has exited (only its exit status is left)


def _children(pid: int, marker: str) -> list[int]:
    """Living children of `pid` whose command line contains `marker`."""
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (_stat(int(entry.name)) or ("", 0))[1] == pid and _alive(int(entry.name)):
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline:
                found.append(int(entry.name))
    return found


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"{what} within {timeout:.0f} s")


class App:
    """`minibert app ARGS` as a teacher starts it (in its own session here, so the test can signal it alone)."""

    def __init__(self, tmp_path: Path, *args: str):
        self.log = open(tmp_path / "minibert-app.log", "w")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        self.process = subprocess.Popen([sys.executable, "-m", "minibert", "app", "--port", "0", *args], cwd=ROOT,
                                        stdout=subprocess.PIPE, stderr=self.log, text=True, env=env,
                                        start_new_session=True)
        self.line = self.process.stdout.readline()  # blocks until Voilà listens (or the command dies)
        match = re.search(r" is at (http://127\.0\.0\.1:(\d+)/) ", self.line)
        assert match, f"`minibert app` printed no address: {self.line!r}\n{self.stderr()}"
        self.url, self.port = match.group(1), int(match.group(2))
        voila = _children(self.process.pid, "voila_guard.py")
        assert len(voila) == 1, f"expected one Voilà process under `minibert app`, found {voila}"
        self.voila = voila[0]

    def stderr(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()

    def kernels(self) -> list[int]:
        return _children(self.voila, "ipykernel")

    def close(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        for pid in [self.voila, *_children(self.voila, "")]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.log.close()


@pytest.fixture
def started(tmp_path):
    apps = []

    def start(*args: str) -> App:
        apps.append(App(tmp_path, *args))
        return apps[-1]

    yield start
    for a in apps:
        a.close()


def _open_page(url: str) -> None:
    """GET the page as a script would (Voilà runs the notebook in a new kernel while it answers)."""
    with urllib.request.urlopen(url, timeout=120) as response:
        assert response.status == 200 and b"Parameter" in response.read()


@needs_proc
def test_sighup_to_minibert_app_stops_voila(started):
    """A closed terminal sends SIGHUP to `minibert app`; Voilà, in its own session, gets none itself."""
    running = started()
    assert "WARNING" not in running.stderr()  # localhost only: nothing to warn about
    assert os.getpgid(running.voila) == running.voila != os.getpgid(running.process.pid)  # its own process group
    running.process.send_signal(signal.SIGHUP)
    assert running.process.wait(30) == 0
    _wait(lambda: not _alive(running.voila), 30, f"Voilà (pid {running.voila}) still runs after SIGHUP to its parent")
    _wait(lambda: app.port_is_free(running.port), 15, f"port {running.port} still in use")


@needs_proc
def test_sigkill_to_minibert_app_stops_voila_and_its_kernel(started):
    """SIGKILL cannot be caught, so `minibert app` cannot clean up: Voilà's guard sees its pipe close and stops
    Voilà, which shuts its kernel down."""
    running = started()
    _open_page(running.url)
    kernels = _wait(running.kernels, 30, "no kernel started for the page")
    assert len(kernels) == 1
    os.kill(running.process.pid, signal.SIGKILL)
    running.process.wait(10)
    _wait(lambda: not _alive(running.voila), 30, f"Voilà (pid {running.voila}) still runs after SIGKILL to its parent")
    _wait(lambda: not any(_alive(k) for k in kernels), 30, f"the kernel {kernels} outlived Voilà")
    _wait(lambda: app.port_is_free(running.port), 15, f"port {running.port} still in use")


@needs_proc
def test_ip_every_network_warns_and_serves(started):
    running = started("--ip", "0.0.0.0")
    err = running.stderr()
    assert "WARNING: minibert app serves the calculator to every network this computer is on, with no password." \
        in err, err
    assert "Use it only on a network you\n  trust" in err and "stop it with Ctrl+C" in err
    for address in app.network_addresses():  # this computer's own network addresses reach it too
        with socket.create_connection((address, running.port), timeout=5):
            pass
    running.process.send_signal(signal.SIGINT)  # Ctrl+C in its terminal (SIGTERM: tests/test_browser.py)
    assert running.process.wait(30) == 0
    _wait(lambda: not _alive(running.voila), 30, "Voilà still runs after Ctrl+C in its parent")


# -------------------------------------------------------------------------------------------------- browser


def _calculator_page(browser, url: str):
    import urllib.parse

    origin = "{0.scheme}://{0.netloc}/".format(urllib.parse.urlsplit(url))
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith((origin, "data:", "blob:"))
                  else route.abort("blockedbyclient"))  # offline: nothing leaves this server
    page = context.new_page()
    page.goto(url, timeout=120_000)
    page.locator(".minibert-total").wait_for(timeout=120_000)
    return context, page


@needs_proc
def test_a_closed_tab_frees_its_kernel_an_open_one_keeps_it_a_lost_one_is_culled(browser, started):
    """Two pages, two kernels. Closing one (the browser fires beforeunload) frees its kernel: usually at once by
    the page's shutdown request, else by the culler (no 403 either way). The other stays open past the idle time and keeps its kernel, and still answers. Lost
    without beforeunload (a crashed browser, a sleeping laptop), it is culled once idle for --cull-idle seconds."""
    from playwright.sync_api import expect

    cull_idle = 45
    running = started("--cull-idle", str(cull_idle))
    assert running.kernels() == []  # waiting for Voilà to listen started none
    kept_context, kept = _calculator_page(browser, running.url)
    assert len(running.kernels()) == 1
    closed_context, closed = _calculator_page(browser, running.url)
    two = running.kernels()
    assert len(two) == 2
    closed.close(run_before_unload=True)
    # The page posts a shutdown on beforeunload; a browser may drop that request while the page unloads (seen
    # on a loaded machine), and then the culler frees the kernel: either way the closed tab's kernel goes.
    _wait(lambda: len(running.kernels()) == 1, cull_idle + 30, "closing the tab did not free its kernel")
    closed_context.close()
    log = running.stderr()
    assert "403" not in log, f"the closed page's shutdown request was refused:\n{log}"
    culled = log.count("Culling")

    # The open page idles past the cull time: its kernel stays, and it still computes.
    time.sleep(cull_idle + 10)
    assert len(running.kernels()) == 1
    preset = kept.locator(".widget-dropdown", has=kept.locator("label", has_text=re.compile(r"^\s*Preset\s*$")))
    preset.locator("select").select_option("bert-large-uncased")
    expect(kept.locator(".minibert-total")).to_have_text("335,141,888", timeout=30_000)
    assert running.stderr().count("Culling") == culled, "the open page's kernel was culled"

    # Lost without beforeunload: the websocket closes, and the culler frees the kernel.
    kept_context.close()
    _wait(lambda: running.kernels() == [], cull_idle + 30, "the lost page's kernel was not culled")
    assert "Culling 'idle' kernel" in running.stderr()


def _hosting_link(kind: str) -> str:
    """The urlpath of docs/hosting.md's Binder link for `kind` (lab or voila), decoded."""
    import urllib.parse

    text = (ROOT / "docs" / "hosting.md").read_text(encoding="utf-8")
    links = re.findall(r"https://mybinder\.org/v2/gh/OWNER/minibert/HEAD\?urlpath=(\S+?)`", text)
    paths = [urllib.parse.unquote(link) for link in links]
    return next(p for p in paths if p.startswith(kind))


@needs_proc
def test_binder_calculator_link_frees_its_kernel_when_its_tab_closes(browser, tmp_path):
    """On Binder or a JupyterHub, the calculator is Voilà's server extension inside the Jupyter server. Started
    through Binder's `start` script, the docs' link uses our page template, whose closed tab frees its kernel
    (with Voilà's own template the kernel stays: no _xsrf cookie, the shutdown is refused)."""
    import json

    path = _hosting_link("voila/")
    assert path == "voila/render/app/calculator.ipynb?template=minibert"
    assert _hosting_link("lab/") == "lab/tree/notebooks" and (ROOT / "notebooks").is_dir()
    port = app.free_port()
    base = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("JUPYTER_PATH", None)
    with open(tmp_path / "server.log", "w") as log:
        server = subprocess.Popen(["bash", str(ROOT / "start"), sys.executable, "-m", "jupyter", "server",
                                   "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
                                   "--IdentityProvider.token=classroom", "--allow-root", f"--ServerApp.root_dir={ROOT}"],
                                  cwd=tmp_path, env=env, stdout=log, stderr=log, start_new_session=True)

        def kernels() -> int:
            with urllib.request.urlopen(base + "api/kernels?token=classroom", timeout=10) as response:
                return len(json.load(response))

        context = None
        try:
            _wait(lambda: _try(kernels) is not None, 120, "the Jupyter server did not answer")
            assert kernels() == 0
            context, page = _calculator_page(browser, base + path + "&token=classroom")
            assert kernels() == 1
            assert "_xsrf" in [c["name"] for c in context.cookies()]
            page.close(run_before_unload=True)
            # A browser may drop the unload request on a loaded machine (no culler runs here to catch it); what
            # the start script must guarantee is that the request, when it arrives, is not refused with a 403.
            try:
                _wait(lambda: kernels() == 0, 30, "closing the calculator's tab did not free its kernel")
            except AssertionError:
                served = (tmp_path / "server.log").read_text()
                assert "shutdown" not in served or " 403 " not in served, served
                print("the browser dropped the closed tab's shutdown request; no 403 in the server log")
        except Exception:
            print((tmp_path / "server.log").read_text())
            raise
        finally:
            if context is not None:
                context.close()
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)


def _try(function):
    try:
        return function()
    except OSError:
        return None
