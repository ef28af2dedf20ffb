"""Checks for chapter 00, the BERT blueprint."""

from __future__ import annotations

from . import expect, not_done, passed

# Names of BERT miniatures (Turc et al., 2019) that chapter 00's presets do not list, with their sizes written
# out here: (layers, hidden size, heads). The feed-forward width is 4 x the hidden size.
_MINIATURES = {
    "google/bert_uncased_L-6_H-256_A-4": (6, 256, 4),
    "google/bert_uncased_L-12_H-128_A-2": (12, 128, 2),
    "google/bert_uncased_L-10_H-512_A-8": (10, 512, 8),
    "google/bert_uncased_L-2_H-768_A-12": (2, 768, 12),
}


def check_miniature(fn) -> None:
    not_done(fn, "0.1")
    expect(callable(fn), "0.1", f"miniature should be a function, got {type(fn).__name__}.",
           "def miniature(name): ... return BertConfig(...)")
    for name, (layers, hidden, heads) in _MINIATURES.items():
        try:
            config = fn(name)
        except ValueError as exc:
            expect(False, "0.1", f"miniature({name!r}) raised ValueError: {exc}",
                   "read L, H and A from the name yourself (split it at '_' and '-'); from_preset knows only "
                   "four miniatures.")
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
    for hidden, wanted in [(768, 64), (384, 64), (1000, 64), (100, 64), (80, 30), (1, 64), (96, 36)]:
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
        tied = [h for h, d in sizes.items() if abs(d - wanted) == best]
        expect(not (have in tied and len(tied) > 1), "0.2", f"for hidden_size {hidden} and head size {wanted}, "
               f"head sizes {sorted({sizes[h] for h in tied}, reverse=True)} are equally close; you took the smaller.",
               "on a tie take the larger head size (the fewer heads).")
        expect(False, "0.2", f"for hidden_size {hidden} and head size {wanted}, {have} heads give a head size of "
               f"{hidden // have}, but another head count gives one closer to {wanted}.",
               "compare |hidden_size / h - head_size| over every h that divides hidden_size.")
    passed("0.2")


def check_error_message(message) -> None:
    not_done(message, "0.3")
    expect(isinstance(message, str), "0.3", f"message should be the error's text (a str), got {type(message).__name__}.",
           "inside `except ValueError as exc:` write message = str(exc).")
    # What the divisibility error must say (chapter 00): both values, with their field names, and the rule.
    for part, what in (("hidden_size (512)", "the hidden size with its value"),
                       ("num_attention_heads (12)", "the number of heads with its value"),
                       ("divisible", "the rule that is broken")):
        expect(part in message, "0.3", f"the message does not name {what} ({part!r}): {message[:200]!r}.",
               "catch the ValueError raised by BertConfig.from_dict(colleague) and store str(exc), not your "
               "own text.")
    passed("0.3")
