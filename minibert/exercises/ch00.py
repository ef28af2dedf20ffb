"""Checks for chapter 00, the BERT blueprint."""

from __future__ import annotations

import dataclasses
import random

from . import expect, not_done, passed

# Names of BERT miniatures (Turc et al., 2019) that chapter 00's presets do not list, with their sizes written
# out here: (layers, hidden size, heads). The feed-forward width is 4 x the hidden size.
_MINIATURES = {
    "google/bert_uncased_L-6_H-256_A-4": (6, 256, 4),
    "google/bert_uncased_L-12_H-128_A-2": (12, 128, 2),
    "google/bert_uncased_L-10_H-512_A-8": (10, 512, 8),
    "google/bert_uncased_L-2_H-768_A-12": (2, 768, 12),
}


def _unseen_miniature() -> tuple[str, tuple[int, int, int]]:
    """A name in the miniatures' pattern drawn afresh at every check, so a table of known names cannot pass."""
    rng = random.Random()  # not seeded on purpose: the answer must read the numbers, whatever they are
    layers, heads = rng.randint(1, 24), rng.randint(1, 16)
    hidden = heads * rng.choice((32, 64))
    return f"google/bert_uncased_L-{layers}_H-{hidden}_A-{heads}", (layers, hidden, heads)


def check_miniature(fn) -> None:
    not_done(fn, "0.1")
    expect(callable(fn), "0.1", f"miniature should be a function, got {type(fn).__name__}.",
           "def miniature(name): ... return BertConfig(...)")
    for name, (layers, hidden, heads) in [*_MINIATURES.items(), _unseen_miniature()]:
        try:
            config = fn(name)
        except (ValueError, KeyError) as exc:
            expect(False, "0.1", f"miniature({name!r}) raised {type(exc).__name__}: {exc}",
                   "read L, H and A from the name yourself (split it at '_' and '-'); from_preset knows only "
                   "four miniatures, and a table of names knows only the names in it.")
        expect(config is not None, "0.1", f"miniature({name!r}) returned None.", "return BertConfig(...).")
        want = {"num_hidden_layers": layers, "hidden_size": hidden, "num_attention_heads": heads,
                "intermediate_size": 4 * hidden, "vocab_size": 30522}
        # The notebook's own BertConfig class is not minibert's object, so look at the fields, not the type.
        expect(all(hasattr(config, f) for f in want), "0.1",
               f"miniature({name!r}) should return a BertConfig, got {type(config).__name__}.",
               "return BertConfig(num_hidden_layers=..., hidden_size=..., ...).")
        have = {f: getattr(config, f) for f in want}
        if have == want:
            continue
        expect(not (have["hidden_size"] == heads and have["num_attention_heads"] == hidden), "0.1",
               f"for {name!r} you set hidden_size={have['hidden_size']} and "
               f"num_attention_heads={have['num_attention_heads']}: the two are swapped.",
               "in these names H is the hidden size (our C) and A the number of heads (our H).")
        expect(have["intermediate_size"] != 3072 or hidden == 768, "0.1",
               f"for {name!r} intermediate_size is 3072, BERT-base's default: you did not set it.",
               "the miniatures' feed-forward width is 4 x the hidden size.")
        for field, value in want.items():
            expect(have[field] == value, "0.1", f"for {name!r}, {field} is {have[field]}, expected {value}.",
                   "L is the number of layers, H the hidden size, A the number of heads; "
                   "intermediate_size = 4 * hidden size.")
    passed("0.1")


def check_heads_for(fn) -> None:
    not_done(fn, "0.2")
    for hidden, wanted in [(768, 64), (384, 64), (1000, 64), (100, 64), (80, 30), (1, 64), (96, 36), (1000, 32),
                           (768, 8)]:
        # every head count that divides the width, by trial division, with its head size
        sizes = {h: hidden // h for h in range(1, hidden + 1) if (hidden // h) * h == hidden}
        best = min(abs(d - wanted) for d in sizes.values())
        want = min(h for h, d in sizes.items() if abs(d - wanted) == best)  # on a tie the larger head size
        have = fn(hidden, wanted)
        expect(have is not None, "0.2", "heads_for returned None.", "return a number of heads.")
        expect(isinstance(have, int) and not isinstance(have, bool) and have >= 1, "0.2",
               f"heads_for({hidden}, {wanted}) returned {have!r}, not a positive whole number of heads.",
               "return an int such as 12.")
        expect(hidden % have == 0, "0.2", f"heads_for({hidden}, {wanted}) returned {have}, which does not divide "
               f"{hidden}: each head would get {hidden / have:.2f} dimensions.",
               "consider only head counts h with hidden_size % h == 0.")
        if have == want:
            continue
        expect(not (want > 64 and have <= 64), "0.2", f"for hidden_size {hidden} and head size {wanted} the answer "
               f"has more than 64 heads; you returned {have}.", "try every head count that divides hidden_size, "
               "up to hidden_size itself.")
        near_count = min(sizes, key=lambda h: (abs(h - hidden / wanted), h))  # the head COUNT closest to C / D
        expect(have != near_count, "0.2", f"for hidden_size {hidden} and head size {wanted} you returned the head "
               f"count closest to {hidden} / {wanted} = {hidden / wanted:g}; its head size {hidden // have} is not the "
               f"closest to {wanted}.", "compare head SIZES: |hidden_size / h - head_size| for each h.")
        tied = [h for h, d in sizes.items() if abs(d - wanted) == best]
        expect(not (have in tied and len(tied) > 1), "0.2", f"for hidden_size {hidden} and head size {wanted}, "
               f"head sizes {sorted({sizes[h] for h in tied}, reverse=True)} are equally close; you took the smaller.",
               "on a tie take the larger head size (the fewer heads).")
        expect(False, "0.2", f"for hidden_size {hidden} and head size {wanted}, {have} heads give a head size of "
               f"{hidden // have}, but another head count gives one closer to {wanted}.",
               "compare |hidden_size / h - head_size| over every h that divides hidden_size.")
    passed("0.2")


def _shrink_cases():
    from minibert.config import BertConfig

    base, large = BertConfig(), BertConfig.from_preset("bert-large-uncased")
    small = BertConfig(hidden_size=384, num_hidden_layers=3, num_attention_heads=12, intermediate_size=1536,
                       vocab_size=1000, hidden_dropout_prob=0.2, layer_norm_eps=1e-6)
    return [(base, 2), (base, 3), (base, 4), (large, 4), (small, 2), (small, 6)], [(base, 5), (base, 8), (small, 16)]


def check_shrink(fn) -> None:
    not_done(fn, "0.3")
    expect(callable(fn), "0.3", f"shrink should be a function, got {type(fn).__name__}.",
           "def shrink(config, factor): ... return a new config")
    fits, impossible = _shrink_cases()
    for config, factor in fits:
        before = dataclasses.asdict(config)
        try:
            have = fn(config, factor)
        except ValueError as exc:
            expect(False, "0.3", f"shrink(config with C = {config.hidden_size}, H = {config.num_attention_heads}, "
                   f"{factor}) raised ValueError: {exc}", f"C / {factor} = {config.hidden_size // factor} holds "
                   f"{config.hidden_size // factor // config.head_size} heads of {config.head_size}: that fits.")
        expect(dataclasses.asdict(config) == before, "0.3", "shrink changed the config it was given.",
               "build a new config (BertConfig(...) or dataclasses.replace) instead of assigning fields.")
        expect(have is not None and hasattr(have, "hidden_size") and hasattr(have, "head_size"), "0.3",
               f"shrink should return a BertConfig, got {type(have).__name__}.", "return BertConfig(...).")
        C, H, F, D = config.hidden_size, config.num_attention_heads, config.intermediate_size, config.head_size
        what = f"shrink(config with C = {C}, H = {H}, F = {F}, {factor})"
        expect(have.hidden_size == C // factor, "0.3", f"{what} has hidden_size {have.hidden_size}, expected "
               f"{C // factor}.", "divide hidden_size by factor.")
        expect(have.intermediate_size == F // factor, "0.3", f"{what} has intermediate_size {have.intermediate_size}"
               f", expected {F // factor}: the feed-forward layer must shrink too.",
               "divide intermediate_size by factor as well, so F / C stays the same.")
        expect(have.num_attention_heads != H or H == C // factor // D, "0.3", f"{what} keeps {H} heads, so each "
               f"head has {have.hidden_size // H} dimensions instead of {D}.",
               "keep the head size D = C / H: the narrower model needs fewer heads, (C / factor) / D.")
        expect(have.head_size == D and have.num_attention_heads == C // factor // D, "0.3", f"{what} has "
               f"{have.num_attention_heads} heads of {have.head_size}; expected {C // factor // D} heads of {D}.",
               "num_attention_heads = (hidden_size / factor) / head_size.")
        for name, value in before.items():
            if name not in ("hidden_size", "intermediate_size", "num_attention_heads"):
                expect(getattr(have, name, None) == value, "0.3", f"{what} changed {name} from {value!r} to "
                       f"{getattr(have, name, None)!r}.", "copy every other field from the config you are given.")
    for config, factor in impossible:
        C, D = config.hidden_size, config.head_size
        try:
            have = fn(config, factor)
        except ValueError:
            continue
        got = f"{have.num_attention_heads} heads of {have.head_size}" if hasattr(have, "head_size") else repr(have)
        expect(False, "0.3", f"shrink(config with C = {C}, {factor}) returned {got}; but {C} / {factor} = "
               f"{C / factor:g} is not a whole number of heads of size {D}.",
               f"raise ValueError when hidden_size % factor != 0 or (hidden_size // factor) % head_size != 0.")
    passed("0.3")
