"""Chapter 08: minibert.BertTokenizer equals tokenizers and transformers.BertTokenizer on EVERY line of the
three corpora of minibert.corpora (English Wikipedia 35,277, People's Daily 19,484, product reviews 17,363:
72,124 lines), with and without lower-casing, and on every code point of Unicode planes 0-2.

The references and helpers are those of tests/test_ch08_tokenizer.py; this file is separate so that
`make test` (pytest-xdist, --dist loadfile) runs it on a worker of its own.
"""

import unicodedata

import pytest

from test_ch08_tokenizer import corpus, differences, ours, rust

SHARDS = 4


@pytest.mark.parametrize("shard", range(SHARDS))
@pytest.mark.parametrize("lower", [True, False], ids=["uncased", "cased"])
@pytest.mark.parametrize("name", ["wikipedia", "peoples_daily", "reviews"])
def test_corpus_parity(name, lower, shard):
    """Every line of the three corpora (35,277 + 19,484 + 17,363), cased and uncased: 0 lines differ."""
    texts = corpus(name)[shard::SHARDS]
    bad = differences(texts, lower)
    assert not bad, f"{len(bad)} of {len(texts)} lines differ, e.g.\n" + "\n".join(bad[:5])


def test_corpus_sizes():
    assert [len(corpus(n)) for n in ("wikipedia", "peoples_daily", "reviews")] == [35_277, 19_484, 17_363]



@pytest.mark.parametrize("lower, bound", [(True, 503), (False, 119)], ids=["uncased", "cased"])
def test_unicode_sweep_planes_0_to_2(lower, bound):
    """Every code point of planes 0-2 between two letters. The differences left (503 code points uncased, 119
    cased, none in the corpora or the hard cases) are characters whose Unicode category changed between the
    Unicode version Python 3.11 ships (14.0) and the older tables tokenizers uses; this pins them so no new one
    appears. The counts depend on the Python version (its unicodedata tables), as chapter 08 says."""
    texts = ["a" + chr(c) + "b" for c in range(0x30000) if not 0xD800 <= c <= 0xDFFF]
    expected = rust(lower).encode_batch(texts, add_special_tokens=False)
    tok = ours(lower)
    bad = [t[1] for t, e in zip(texts, expected) if tok.tokenize(t) != e.tokens]
    assert len(bad) <= bound
    assert {unicodedata.category(c) for c in bad} <= {"Mn", "Mc", "Po", "Ps", "Pe", "Pd", "Cf", "So"}
