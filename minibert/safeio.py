"""Bounded reading of small JSON files (hand-written, not generated from a notebook).

`config.json`, `tokenizer_config.json` and the like are read with `read_json_file`: it refuses anything that
is not a regular file (a folder, a FIFO that would block, `/dev/zero` that never ends) before opening it,
reads at most `max_bytes`, limits nesting (deep nesting would exhaust Python's recursion limit) and turns
every problem into a `ValueError` naming the file and what was expected. Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

MAX_JSON_BYTES = 1_000_000  # a BERT config.json is under 1 kB; a tokenizer_config.json a few kB
MAX_JSON_DEPTH = 32  # configs nest two or three levels
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKET = re.compile(r"[\[\]{}]")


def regular_file(path, *, what: str = "file", max_bytes: int | None = None) -> Path:
    """The path as a Path, after checking that it is a regular file no larger than max_bytes.

    A missing path raises FileNotFoundError (an OSError, as open() does); anything else that is wrong
    raises ValueError naming the path.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"{what}: expected a path (str or os.PathLike), got {type(path).__name__}")
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file; expected a {what}") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror}); expected a {what}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ValueError(f"{path}: is a folder; expected a {what}")
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{path}: is not a regular file (a device, FIFO or socket); expected a {what}")
    if max_bytes is not None and info.st_size > max_bytes:
        raise ValueError(f"{path}: {info.st_size:,} bytes is larger than the {max_bytes:,} bytes a {what} may have")
    return path


def json_depth(text: str) -> int:
    """The deepest nesting of [ and { in a JSON text (brackets inside strings do not count)."""
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub('""', text)):
        depth += 1 if match.group(0) in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def read_json_file(path, *, what: str = "JSON file", max_bytes: int = MAX_JSON_BYTES,
                   max_depth: int = MAX_JSON_DEPTH) -> dict:
    """Read a small JSON object from a regular file; ValueError naming the file for every problem."""
    path = regular_file(path, what=what, max_bytes=max_bytes)
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)  # the file may have grown since stat()
    if len(data) > max_bytes:
        raise ValueError(f"{path}: larger than the {max_bytes:,} bytes a {what} may have")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc}); expected a {what}") from None
    depth = json_depth(text)
    if depth > max_depth:
        raise ValueError(f"{path}: nested {depth} levels deep, more than the {max_depth} a {what} may have")
    try:
        value = json.loads(text)
    except ValueError as exc:  # JSONDecodeError, and integers longer than Python's digit limit
        raise ValueError(f"{path}: not a valid {what} ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: a {what} must hold a JSON object {{...}}, got {type(value).__name__}")
    return value
