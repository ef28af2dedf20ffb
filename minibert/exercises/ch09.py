"""Checks for chapter 09, real weights."""

from __future__ import annotations

from . import expect, not_done, passed


def check_max_pool(fn) -> None:
    """9.1: the largest value of each feature over the real tokens, compared with a per-text slice."""
    not_done(fn, "9.1")
    import torch

    g = torch.Generator().manual_seed(91)
    hidden = torch.randn(3, 5, 4, generator=g) - 2.0  # (B, T, C), mostly negative: a zero must not win
    hidden[2, 0] = 5.0  # padding with the largest values of row 2
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [0, 1, 1, 1, 0]])  # right and left padding
    have = fn(hidden.clone(), mask.clone())
    expect(isinstance(have, torch.Tensor) and tuple(have.shape) == (3, 4), "9.1",
           f"expected a (3, 4) tensor for hidden (3, 5, 4) and mask (3, 5), got "
           f"{tuple(have.shape) if isinstance(have, torch.Tensor) else type(have).__name__}.",
           "take the max over the token dimension (dim=1), so that one vector per text is left.")
    for i in range(3):
        want = hidden[i][mask[i].bool()].max(dim=0).values  # only the real tokens, wherever they sit
        if torch.allclose(have[i], want, atol=1e-6):
            continue
        if torch.allclose(have[i], hidden[i].max(dim=0).values, atol=1e-6):
            problem, hint = (f"text {i} has {int((mask[i] == 0).sum())} padding positions, and your max includes them.",
                             "set the padded positions to -inf (masked_fill) before taking the max.")
        elif bool((have[i] == 0).any()):
            problem, hint = (f"text {i}: a 0 won where every real value is negative; multiplying by the mask turns "
                             f"padding into 0, which can be larger than the real values.",
                             "fill padding with -inf instead of multiplying by the mask.")
        else:
            problem, hint = (f"text {i}: expected {[round(float(x), 4) for x in want]}, got "
                             f"{[round(float(x), 4) for x in have[i]]}.",
                             "the max over the tokens (dim=1) of hidden with every padded position set to -inf first.")
        expect(False, "9.1", problem, hint)
    passed("9.1")


def _reference(max_length: int):
    """tokenizers' own truncation, on a word-level vocabulary with BERT's [CLS] ... [SEP] template."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, **{f"w{i}": 4 + i for i in range(40)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    if max_length:
        tok.enable_truncation(max_length)
    return tok


def check_truncate(fn) -> None:
    """9.2: the same ids as tokenizers' truncation at max_length."""
    not_done(fn, "9.2")
    full = _reference(0)
    for n_words, max_length in ((10, 6), (3, 8), (4, 6), (5, 6), (30, 2), (1, 3)):
        text = " ".join(f"w{(7 * i) % 40}" for i in range(n_words))
        ids = full.encode(text).ids  # [CLS] w.. [SEP]: n_words + 2 ids
        want = _reference(max_length).encode(text).ids
        have = fn(list(ids), max_length)
        if isinstance(have, tuple):
            have = list(have)
        expect(isinstance(have, list) and all(isinstance(i, int) for i in have), "9.2",
               f"expected a list of ints, got {type(have).__name__}.", "return a list of ids, like the input.")
        if have == want:
            continue
        if len(ids) <= max_length:
            problem, hint = (f"{len(ids)} ids fit in max_length={max_length}, so they should come back unchanged, got "
                             f"{have}.", "only cut when len(ids) > max_length.")
        elif have and have[-1] != ids[-1]:
            problem, hint = (f"cut to {max_length}, the result {have} no longer ends with [SEP] (id {ids[-1]}).",
                             "keep max_length - 1 ids, then put the last id ([SEP]) back.")
        else:
            problem, hint = (f"for {len(ids)} ids and max_length={max_length} expected {want}, got {have}.",
                             "a text that fits comes back as it is; a longer one keeps its first max_length - 1 ids "
                             "and its [SEP].")
        expect(False, "9.2", problem, hint)
    passed("9.2")


def check_search(fn) -> None:
    """9.3: rows at or above a cosine threshold, most similar first, compared with math on Python floats."""
    not_done(fn, "9.3")
    import math

    import torch

    g = torch.Generator().manual_seed(93)
    for trial, passing in enumerate((4, 1, 6, 0)):  # how many rows pass differs per trial: no fixed top-k passes
        matrix = torch.randn(7, 5, generator=g) * torch.rand(7, 1, generator=g) * 10  # rows of very different lengths
        query = torch.randn(5, generator=g) * 3
        rows, q = matrix.tolist(), query.tolist()

        def cosine(row):
            return sum(a * b for a, b in zip(row, q)) / math.sqrt(sum(a * a for a in row) * sum(b * b for b in q))

        scores = [cosine(r) for r in rows]
        ranked = sorted(scores)
        cut = 7 - passing  # the rows ranked[cut:] pass, the others do not, none close to the line
        threshold = (ranked[cut - 1] + ranked[cut]) / 2 if passing else (ranked[-1] + 1) / 2
        want = sorted((i for i in range(7) if scores[i] >= threshold), key=lambda i: -scores[i])
        have = fn(query.clone(), matrix.clone(), threshold)
        have = list(have) if isinstance(have, (list, tuple)) else have
        kinds = sorted({type(i).__name__ for i in have}) if isinstance(have, list) else []
        expect(isinstance(have, list) and all(isinstance(i, int) for i in have), "9.3",
               f"expected a list of Python ints, got {type(have).__name__}" + (f" of {', '.join(kinds)}" if kinds else "")
               + ".", "convert with .tolist() or int(...).")
        if have == want:
            continue
        if set(have) == set(want):
            problem, hint = (f"trial {trial}: the right rows {sorted(want)}, in the wrong order: {have} "
                             f"(expected {want}).", "most similar first: sort by similarity, descending.")
        else:
            dots = [sum(a * b for a, b in zip(r, q)) for r in rows]
            q_norm = math.sqrt(sum(b * b for b in q))
            unnormalised = [sorted((i for i in range(7) if d[i] >= threshold), key=lambda i: -d[i])
                            for d in (dots, [x / q_norm for x in dots])]  # neither normalised; only the query
            if have in unnormalised:
                problem, hint = (f"trial {trial}: expected rows {want}, got {have}, which look ranked by dot product; "
                                 f"the rows here are not of length 1.", "normalise query and rows first (F.normalize).")
            else:
                problem, hint = (f"trial {trial}: expected rows {want}, got {have}.",
                                 "cosine similarity of each row with the query, keep those >= threshold, largest first.")
        expect(False, "9.3", problem, hint)
    # "At least" the threshold: a row exactly at it counts. Rows of whole numbers orthogonal to the query have a
    # cosine of exactly 0 however it is computed (0 divided by anything, an eps in the denominator included), so a
    # threshold of 0 decides such a row the same way on every machine and in every dtype.
    query = torch.tensor([0.0, 2.0, 0.0, 0.0])
    matrix = torch.tensor([[0.0, 5.0, 0.0, 0.0], [3.0, 0.0, 0.0, 4.0], [0.0, -1.0, 0.0, 0.0], [0.0, 3.0, 0.0, 4.0]])
    want = [0, 3, 1]  # cosines 1, 0, -1 and 0.6: row 1 sits exactly at the threshold
    have = fn(query.clone(), matrix.clone(), 0.0)
    have = list(have) if isinstance(have, (list, tuple)) else have
    if have != want:
        hint = ("a row whose similarity equals the threshold counts (at least: >=)." if have == [0, 3] else
                "cosine similarity of each row with the query, keep those >= threshold, largest first.")
        expect(False, "9.3", f"threshold 0.0: expected rows {want} (cosines 1, 0, -1, 0.6 for rows 0-3), got {have}.",
               hint)
    passed("9.3")
