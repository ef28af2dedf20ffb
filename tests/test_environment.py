"""environment.yml (conda/Binder) and pyproject.toml declare the same packages, pinned alike; environment.yml holds
what the course needs at run time, torch's CPU build and no test tools; the set-up agrees too."""

import importlib.util
import json
import re
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _environment():
    return yaml.safe_load((ROOT / "environment.yml").read_text())


# Packages whose version can change a stored notebook output or the rendered book: constraints.txt and
# environment.yml must pin each of them, to the same version.
OUTPUT_PACKAGES = ["torch", "transformers", "tokenizers", "numpy", "matplotlib", "nbconvert", "nbformat", "nbclient",
                   "ipywidgets", "ipykernel", "jupyter-client", "nbval", "safetensors", "mistune", "pygments", "jinja2",
                   "voila", "ipython", "traitlets", "jupyterlab-widgets", "widgetsnbextension", "pillow", "markupsafe",
                   "bleach", "beautifulsoup4", "huggingface-hub", "tqdm"]


def _name(req: str) -> str:
    return re.sub(r"[-_.]+", "-", re.match(r"\s*([A-Za-z0-9_.\-]+)", req).group(1).lower())


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version and not re.search(r"[<>=!~;@ ]", version), f"constraints.txt: {line!r} is not NAME==VERSION"
            assert _name(name) not in pins, f"constraints.txt pins {name} twice"
            pins[_name(name)] = version
    return pins


def _environment_pip() -> list[str]:
    env = _environment()
    return next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)


def _environment_requirements():
    """environment.yml's pip requirements (packaging Requirement objects), its pip options left out."""
    from packaging.requirements import Requirement

    return [Requirement(line) for line in _environment_pip() if not line.startswith("-")]


# What the course needs at run time: the package's own dependencies, the course extra, and transformers, which
# the notebooks compare against (pyproject.toml lists it with the test tools). environment.yml (students,
# Binder) holds these and none of the other test tools.
TEST_EXTRA_USED_AT_RUN_TIME = {"transformers"}
CUDA_PACKAGES = re.compile(r"^(nvidia-|triton|cuda-|pytorch-triton)", re.I)
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _run_time() -> set[str]:
    project = _pyproject()
    return {_name(r) for r in [*project["dependencies"], *project["optional-dependencies"]["course"]]} | \
        TEST_EXTRA_USED_AT_RUN_TIME


def _test_only() -> set[str]:
    return {_name(r) for r in _pyproject()["optional-dependencies"]["test"]} - _run_time()


def _declared() -> list[str]:
    project = _pyproject()
    return [*project["dependencies"], *(r for extra in project["optional-dependencies"].values() for r in extra)]


def test_constraints_pin_every_package_that_changes_outputs():
    pins = _constraints()
    missing = [p for p in OUTPUT_PACKAGES if p not in pins]
    assert missing == [], f"constraints.txt does not pin {missing}"
    unpinned = [r for r in _declared() if _name(r) not in pins]
    assert unpinned == [], f"declared in pyproject.toml but not pinned in constraints.txt: {unpinned}"


def test_pins_satisfy_what_pyproject_declares():
    from packaging.requirements import Requirement

    pins = _constraints()
    wrong = [f"{r} (pinned {pins[_name(r)]})" for r in _declared()
             if not Requirement(r).specifier.contains(pins[_name(r)], prereleases=True)]
    assert wrong == [], f"constraints.txt pins versions pyproject.toml does not allow: {wrong}"


def test_environment_pins_the_same_versions_as_the_constraints():
    pins = _constraints()
    listed = {}
    for req in _environment_requirements():
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"environment.yml: {req} is not pinned with =="
        version = specs[0].version.split("+")[0]  # torch's local build tag (+cpu) is not part of the pin
        assert listed.setdefault(_name(req.name), version) == version, f"environment.yml pins {req.name} twice"
    differ = {n: (v, pins.get(n)) for n, v in listed.items() if pins.get(n) != v}
    assert differ == {}, f"environment.yml and constraints.txt disagree (environment.yml, constraints.txt): {differ}"
    missing = sorted(_run_time() - set(listed))
    assert missing == [], f"needed at run time (pyproject.toml) but missing from environment.yml: {missing}"
    missing = sorted(set(OUTPUT_PACKAGES) - set(listed) - _test_only())
    assert missing == [], f"environment.yml does not pin {missing}, which change outputs"


def test_environment_holds_no_test_tools():
    """Students and Binder get what the notebooks need, not pytest, nbval, playwright or hypothesis."""
    assert {"pytest", "nbval", "playwright", "hypothesis"} <= _test_only()
    tools = sorted({_name(r.name) for r in _environment_requirements()} & _test_only())
    assert tools == [], f"environment.yml installs test tools students never need: {tools}"


def _imports(source: str) -> set[str]:
    import ast

    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    found = set()
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_environment_holds_every_package_the_notebooks_import():
    """Every package a chapter or the calculator imports is in environment.yml (or postBuild's installs)."""
    import nbformat
    from importlib.metadata import packages_distributions

    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")) + [ROOT / "app" / "calculator.ipynb"]
    modules = set()
    for path in notebooks:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                modules |= _imports(cell.source)
    assert {"torch", "transformers", "matplotlib", "minibert"} <= modules  # the scan sees the imports
    post = (ROOT / "postBuild").read_text()
    by_module = packages_distributions()
    listed = {_name(r.name) for r in _environment_requirements()}
    lacking = {}
    for module in sorted(modules - set(sys.stdlib_module_names) - {"minibert"}):
        dists = {_name(d) for d in by_module.get(module, [])}
        assert dists, f"the notebooks import {module}, which no installed package provides"
        if not dists & listed and not any(f"--no-deps {d}==" in post.replace("_", "-") for d in dists):
            lacking[module] = sorted(dists)
    assert lacking == {}, f"the notebooks import these, which environment.yml does not install: {lacking}"


def _torch_requirements(platform: str) -> list[str]:
    env = {"sys_platform": platform}
    return [str(r.specifier) for r in _environment_requirements()
            if _name(r.name) == "torch" and (r.marker is None or r.marker.evaluate(env))]


def test_environment_installs_torch_cpu_build_from_pytorch_cpu_index():
    """PyPI's Linux torch pulls in the CUDA libraries (nvidia-*, triton: several GB); `+cpu` builds exist only
    on PyTorch's CPU index, so pinning one makes pip take it from there. macOS wheels carry no CUDA."""
    options = [line for line in _environment_pip() if line.startswith("-")]
    assert options == [f"--extra-index-url {CPU_INDEX}"], options  # an extra index: PyPI still serves the rest
    assert _torch_requirements("linux") == ["==2.13.0+cpu"]  # Binder
    assert _torch_requirements("win32") == ["==2.13.0+cpu"]
    assert _torch_requirements("darwin") == ["==2.13.0"]
    assert _constraints()["torch"] == "2.13.0"


def test_nothing_cuda_is_pulled_in():
    """No CUDA package is listed, none is required by what environment.yml installs here (following the installed
    packages' declared dependencies, as pip would on this platform), and postBuild stops a build that got one."""
    from importlib.metadata import PackageNotFoundError, distribution
    from packaging.requirements import Requirement

    named = [r.name for r in _environment_requirements() if CUDA_PACKAGES.match(r.name)]
    assert named == [], f"environment.yml lists CUDA packages: {named}"
    seen, todo, pulled = set(), [r.name for r in _environment_requirements()
                                 if r.marker is None or r.marker.evaluate()], []
    while todo:
        name = _name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        if CUDA_PACKAGES.match(name):
            pulled.append(name)
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    assert "torch" in seen and "transformers" in seen and len(seen) > 40
    assert pulled == [], f"environment.yml's packages pull in CUDA packages: {pulled}"
    post = (ROOT / "postBuild").read_text()
    check = post.index("torch.version.cuda")
    assert check < post.index("pip install"), "postBuild checks for a CUDA build before anything else"
    assert "grep -iE '^(nvidia-|triton|cuda-)'" in post and "exit 1" in post


def test_this_environment_has_the_pinned_versions():
    """The stored outputs are only comparable with these versions: say which package differs, not a diff of floats."""
    from importlib.metadata import PackageNotFoundError, version

    pins = _constraints()
    differ = {}
    for name in OUTPUT_PACKAGES:
        try:
            have = version(name).split("+")[0]  # torch's local build tag (+cpu) is not part of the pin
        except PackageNotFoundError:
            have = None
        if have != pins[name]:
            differ[name] = (have, pins[name])
    assert differ == {}, f"installed versions differ from constraints.txt (installed, pinned): {differ}; run make setup"


def test_environment_uses_conda_forge_and_python_311():
    env = _environment()
    assert env["channels"] == ["conda-forge"]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    assert "python=3.11" in conda and "pip" in conda
    assert _pyproject()["requires-python"].startswith(">=3.11")


def test_torch_is_pinned_the_same_everywhere():
    spec = importlib.util.spec_from_file_location("setup_env", ROOT / "scripts" / "setup_env.py")
    setup_env = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup_env)
    assert setup_env.TORCH == "torch==2.13.0"
    assert setup_env.TORCH in _pyproject()["dependencies"]
    # Binder's postBuild installs the same no-deps packages as the make set-up.
    post = (ROOT / "postBuild").read_text()
    for package in setup_env.NO_DEPS:
        assert f"--no-deps {package}" in post
    extras = set(setup_env.EXTRAS.split(","))
    assert extras == set(_pyproject()["optional-dependencies"]), "the set-up must install every extra"
    assert _constraints()["torch"] == setup_env.TORCH.split("==")[1]
    for package in setup_env.NO_DEPS:
        name, _, pinned = package.partition("==")
        assert _constraints()[_name(name)] == pinned, package


def _setup_env():
    spec = importlib.util.spec_from_file_location("setup_env", ROOT / "scripts" / "setup_env.py")
    setup_env = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup_env)
    return setup_env


def test_setup_uses_the_constraints_and_refreshes_a_moved_checkout(tmp_path, monkeypatch):
    """Every pip install gets `-c constraints.txt`; a changed constraints file changes the fingerprint; a stamp
    written by another checkout's set-up makes it point the editable install here, without a full reinstall."""
    setup_env = _setup_env()
    calls = []
    monkeypatch.setattr(setup_env.subprocess, "run", lambda cmd, **kw: calls.append(cmd))
    setup_env.pip("-q", "torch==2.13.0")
    assert calls[-1][calls[-1].index("-c") + 1] == str(ROOT / "constraints.txt")
    want = setup_env.fingerprint()
    monkeypatch.setattr(setup_env, "CONSTRAINTS", tmp_path / "constraints.txt")
    (tmp_path / "constraints.txt").write_text("numpy==1.0\n")
    assert setup_env.fingerprint() != want
    monkeypatch.setattr(setup_env, "CONSTRAINTS", ROOT / "constraints.txt")
    stamp = tmp_path / "stamp.json"
    monkeypatch.setattr(setup_env, "STAMP", stamp)
    monkeypatch.setattr(setup_env, "venv_works", lambda: True)
    monkeypatch.setattr(setup_env, "npm_setup", lambda: 0)
    stamp.write_text(json.dumps({"fingerprint": want, "root": "/somewhere/else"}))
    calls.clear()
    assert setup_env.main() == 0
    assert len(calls) == 1 and calls[0][-3:] == ["--no-deps", "-e", "."], calls
    assert json.loads(stamp.read_text()) == {"fingerprint": want, "root": str(ROOT)}
    calls.clear()
    assert setup_env.main() == 0 and calls == []  # up to date now: nothing to install


def test_setup_refuses_a_python_older_than_the_pins_need(monkeypatch, capsys):
    """constraints.txt pins packages that need Python >= 3.11.5 (Debian 12's python3.11 is 3.11.2): the set-up
    says so and what to do, before it creates anything, instead of failing inside pip's resolver."""
    import types

    spec = importlib.util.spec_from_file_location("setup_env_old_python", ROOT / "scripts" / "setup_env.py")
    setup_env = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup_env)
    fake_sys = types.SimpleNamespace(version_info=(3, 11, 2, "final", 0), version="3.11.2 (main)",
                                     executable="/usr/bin/python3.11", stderr=sys.stderr)
    monkeypatch.setattr(setup_env, "sys", fake_sys)
    monkeypatch.setattr(setup_env, "venv_works", lambda: (_ for _ in ()).throw(AssertionError("went on")))
    assert setup_env.main() == 2
    err = capsys.readouterr().err
    assert "needs Python 3.11.5 or a newer 3.11" in err and "this is 3.11.2 (/usr/bin/python3.11)" in err
    assert "PYTHON=/path/to/python3.11" in err
    assert _pyproject()["requires-python"] == ">=3.11.5,<3.12"
