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


def check_valid_head_counts(fn) -> None:
    not_done(fn, "0.2")
    for hidden in (1, 12, 36, 97, 768, 1024):
        want = [h for h in range(1, hidden + 1) if (hidden // h) * h == hidden]  # whole head sizes only
        have = list(fn(hidden))
        expect(have == want, "0.2",
               f"valid_head_counts({hidden}) returned {have[:12]}{'...' if len(have) > 12 else ''}, "
               f"expected {want[:12]}{'...' if len(want) > 12 else ''}.",
               "a head count h works when hidden_size % h == 0; include 1 and hidden_size itself, in increasing order.")
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
