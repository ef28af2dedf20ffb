"""environment.yml (conda/Binder) and pyproject.toml declare the same packages; the set-up agrees too."""

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
    for req in _environment_pip():
        name, sep, version = req.partition("==")
        assert sep, f"environment.yml: {req!r} is not pinned with =="
        listed[_name(name)] = version.strip()
    differ = {n: (v, pins.get(n)) for n, v in listed.items() if pins.get(n) != v}
    assert differ == {}, f"environment.yml and constraints.txt disagree (environment.yml, constraints.txt): {differ}"
    missing = sorted({_name(r) for r in _declared()} - set(listed))
    assert missing == [], f"declared in pyproject.toml but missing from environment.yml: {missing}"
    missing = sorted(set(OUTPUT_PACKAGES) - set(listed))
    assert missing == [], f"environment.yml does not pin {missing}, which change outputs"


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
