"""environment.yml (conda/Binder) and pyproject.toml declare the same packages; the set-up agrees too."""

import importlib.util
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _norm(req: str) -> str:
    name, rest = re.match(r"\s*([A-Za-z0-9_.\-\[\],]+)\s*(.*)", req).groups()
    return re.sub(r"[-_.]+", "-", name.lower()) + rest.replace(" ", "")


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _environment():
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def test_environment_declares_the_same_packages_as_pyproject():
    project = _pyproject()
    declared = {_norm(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        declared |= {_norm(r) for r in extra}
    env = _environment()
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {_norm(r) for r in pip if not r.startswith(("-", "."))}
    assert listed == declared, (f"only in environment.yml: {sorted(listed - declared)}; "
                                f"only in pyproject.toml: {sorted(declared - listed)}")


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
