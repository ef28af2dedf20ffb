"""Checks for chapter 00, the BERT blueprint."""

from __future__ import annotations

from . import expect, not_done, passed

# BERT-large as published (Devlin et al., 2018, Table: L=24, H=1024, A=16; feed-forward 4H).
_LARGE = {"num_hidden_layers": 24, "hidden_size": 1024, "num_attention_heads": 16, "intermediate_size": 4 * 1024,
          "vocab_size": 30522, "max_position_embeddings": 512, "type_vocab_size": 2}


def check_large(config) -> None:
    not_done(config, "0.1")
    # The notebook's own BertConfig class is not minibert's object, so look at the fields, not the type.
    expect(all(hasattr(config, name) for name in _LARGE), "0.1",
           f"expected a BertConfig, got {type(config).__name__}.", "write large = BertConfig(hidden_size=..., ...).")
    for name, want in _LARGE.items():
        have = getattr(config, name)
        expect(have == want, "0.1", f"{name} is {have}, but BERT-large has {want}.",
               "BERT-large is 24 layers of width 1024 with 16 heads; the feed-forward width is 4 times the hidden size.")
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
    for part in ("512", "12"):
        expect(part in message, "0.3", f"the message does not mention {part}: {message!r}.",
               "catch the ValueError raised by BertConfig.from_dict(colleague), not another error.")
    passed("0.3")
